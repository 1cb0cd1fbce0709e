/*
 * bench.h - what the parts of conduit-bench share.
 *
 * main.c owns the command line and the table of sections, report.c the
 * table and the JSON output.  Each section measures its figures and hands
 * them to the report: the host-socket sections (sock_*.c: unix, tcp, tls,
 * and resolver.c) with three variants through report.h, the others
 * (vchan.c, lwip.c, and scale_*.c: idle memory and 10,000 concurrent
 * flows) through bench_emit(), with every repeat's run for conduit and for
 * the baseline measured in the same run by the same method.  The
 * byte-stream sections (host sockets, vchan) share one link layer
 * (link.h).
 */
#ifndef CONDUIT_TOOLS_BENCH_H
#define CONDUIT_TOOLS_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

#define BENCH_MAX_REPEATS 32

struct bench_settings {
	bool quick;       /* --quick: the whole run well under a minute */
	unsigned repeats; /* pairs of runs (baseline, conduit) per figure */
	double target_s;  /* aimed-at length of one throughput run */
};

struct bench_figure {
	const char *transport;  /* "vchan", "lwip", "unix", ... */
	const char *figure;     /* JSON name: "throughput", "rtt_median" */
	const char *label;      /* table: "throughput 16 KiB (MiB/s)" */
	const char *unit;       /* "MiB/s", "us", "conn/s", "bytes" */
	const char *baseline;   /* what the baseline is: "raw libxenvchan" */
	const char *param_name; /* "write_size", or NULL */
	uint64_t param;
	bool higher_better;
	int decimals;
	unsigned n;                        /* repeats recorded */
	double base[BENCH_MAX_REPEATS];    /* baseline runs */
	double conduit[BENCH_MAX_REPEATS]; /* conduit runs, paired with base */
};

/* Pinning to a CPU (a hint; Linux only).  The clock and the byte
 * pattern every receiver checks are tools/common's (common.h). */
void bench_pin(int cpu);
/* The TLS server identity every TLS figure uses: a self-signed EC P-256
 * certificate for "bench.test" and its key, PEM, made in memory on the
 * first call.  0, or -1 with the reason in *why.  (TLS builds only.) */
int bench_tls_identity(const char **cert_pem, const char **key_pem,
                       const char **why);

/* Record and print one figure (ratio: median of conduit/base pairs). */
void bench_emit(const struct bench_figure *f);
/* A line for the reader: printed at once (not with --json) and kept for
 * the JSON output. */
void bench_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Errors: helpers record a message and return -1; the caller adds what it
 * was doing and reports it. */
extern char bench_errmsg[512];
int bench_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A failed conduit call's message: the object's detail if it has one. */
const char *bench_cerr(const char *detail, int rc);

/*
 * The sections, in the order they run.  Each returns 0, or -1 after
 * printing why on stderr (a wrong byte, a failed call).  A section whose
 * backend is not built is not compiled in; the table in main.c says so.
 */
int bench_unix(const struct bench_settings *s);
int bench_tcp(const struct bench_settings *s);
int bench_tls(const struct bench_settings *s);
int bench_resolver(const struct bench_settings *s);
int bench_vchan(const struct bench_settings *s);
int bench_lwip(const struct bench_settings *s);
int bench_scale(const struct bench_settings *s);

/* The vchan section measures in a fresh copy of this program, started
 * with CONDUIT_BENCH_ROLE set (the hypervisor emulation must be on its
 * library path from the start): main() hands such a run to this. */
int bench_role_main(const char *role);

#endif
