/*
 * main.c - conduit-bench: what conduit costs on top of what it wraps,
 * beside what a user would otherwise pick (nng).
 *
 * This file owns the command line, the table of sections, and the set-up
 * and clean-up around them.
 *
 * Every figure is measured with up to three variants in the same run:
 *
 *   conduit   the public API the way an application uses it;
 *   baseline  the same work done directly on what conduit wraps (raw
 *             sockets, raw mbedTLS, raw libxenvchan, raw lwIP);
 *   nng       nng's pair1 protocol over ipc://, tcp:// and tls+tcp://
 *             (a benchmark-only dependency, never one of the library).
 *
 * The sections are a table below, each present or absent by build
 * option; bench.h says which file measures what.
 *
 * After a warm-up, each repeat runs the variants back to back, in rotating
 * order, so none always meets a cold or a warm machine.  Machine speed
 * drifts over seconds on a shared host, so comparisons are made inside each
 * repeat: a ratio printed is the median over the repeats of conduit/baseline
 * (or conduit/nng), beside the median of each variant's runs (the JSON
 * output also has every run).  This is not a test: it never fails on
 * speed, only when something breaks (a wrong byte, a failed call), and
 * then exits 1 with a message.
 */

#include "bench.h"
#include "sock.h"

#include <conduit/conduit.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "args.h"

/* ------------------------------------------------------------------ */
/* What every section uses                                             */

char bench_errmsg[512];

int bench_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(bench_errmsg, sizeof(bench_errmsg), fmt, ap);
	va_end(ap);
	return -1;
}

const char *bench_cerr(const char *detail, int rc)
{
	return detail != NULL && detail[0] != '\0' ? detail
	                                           : conduit_strerror(rc);
}

void bench_pin(int cpu)
{
#ifdef __linux__
	if (cpu < 0)
		return;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	/* A hint: if it is refused, the scheduler decides. */
	sched_setaffinity(0, sizeof(set), &set);
#else
	(void)cpu;
#endif
}

/* ------------------------------------------------------------------ */
/* The sections                                                        */

struct section {
	const char *name; /* as --only names it */
	/* The section's figures; NULL when its backend is not built, and
	 * then this note says so. */
	int (*run)(const struct bench_settings *s);
	const char *missing;
	/* Before the table's heading (a failure ends the run), after it,
	 * and after every section has run. */
	int (*setup)(void);
	void (*notes)(bool quick);
	void (*epilogue)(void);
};

#ifndef CONDUIT_HAVE_TLS
#define bench_tls       NULL
#define bench_tls_setup NULL
#define bench_tls_notes NULL
#endif
#ifndef CONDUIT_HAVE_VCHAN
#define bench_vchan NULL
#endif
#ifndef CONDUIT_HAVE_LWIP
#define bench_lwip NULL
#endif

static const struct section sections[] = {
    {"unix", bench_unix, NULL, NULL, NULL, NULL},
    {"tcp", bench_tcp, NULL, NULL, NULL, NULL},
    {"tls", bench_tls,
     "tls: not built (configure with -DCONDUIT_WITH_TLS=ON and "
     "libmbedtls-dev): no TLS figures.",
     bench_tls_setup, bench_tls_notes, NULL},
    {"resolver", bench_resolver, NULL, NULL, NULL, bench_resolver_epilogue},
    {"vchan", bench_vchan,
     "vchan: not built (configure with -DCONDUIT_WITH_VCHAN=ON and "
     "libxen-dev): no vchan figures.",
     NULL, NULL, NULL},
    {"lwip", bench_lwip,
     "lwip: not built (configure with -DCONDUIT_WITH_LWIP=ON and "
     "liblwip-dev): no lwIP figures.",
     NULL, NULL, NULL},
    {"scale", bench_scale, NULL, NULL, NULL, NULL},
};
#define NSECTIONS (sizeof(sections) / sizeof(sections[0]))

/* ------------------------------------------------------------------ */
/* The command line                                                    */

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: conduit-bench [--quick] [--json] [--only SECTION[,...]]\n"
	    "\n"
	    "Measures conduit against a baseline doing the same work in the\n"
	    "same run (raw syscalls for unix and tcp, raw mbedTLS for TLS, "
	    "raw\n"
	    "libxenvchan, raw lwIP) and against nng (ipc, tcp, tls+tcp) where\n"
	    "it is installed: one-way throughput (1, 16, 64 KiB writes),\n"
	    "64-byte round trips, connections and TLS handshakes per second,\n"
	    "rule-based resolutions, idle memory and concurrent flows.  "
	    "Prints\n"
	    "conduit, the baseline, conduit/baseline, nng and conduit/nng.\n"
	    "\n"
	    "  --quick        fewer and shorter runs (the whole run under a "
	    "minute)\n"
	    "  --json         print one JSON object instead of the table\n"
	    "  --only LIST    only these sections (repeatable, or comma-"
	    "separated):\n"
	    "                 unix, tcp, tls, resolver, vchan, lwip, scale\n"
	    "  --help         this text\n"
	    "\n"
	    "Exits 0 whatever the figures; 1 if something broke (a wrong "
	    "byte,\n"
	    "a failed call), 2 on a usage error.\n");
}

/* Add the sections of a comma-separated list to *mask; -1 on a bad one. */
static int parse_only(const char *list, unsigned *mask)
{
	const char *p = list;
	for (int guard = 0; guard < 64; guard++) {
		size_t len = strcspn(p, ",");
		size_t i = 0;
		for (; i < NSECTIONS; i++)
			if (strlen(sections[i].name) == len &&
			    strncmp(p, sections[i].name, len) == 0)
				break;
		if (i == NSECTIONS) {
			fprintf(stderr,
			        "conduit-bench: --only: unknown section '%.*s' "
			        "in '%s'; sections are unix, tcp, tls, "
			        "resolver, vchan, lwip, scale\n",
			        (int)len, p, list);
			return -1;
		}
		*mask |= 1u << i;
		if (p[len] == '\0')
			return 0;
		p += len + 1;
	}
	fprintf(stderr, "conduit-bench: --only: too many sections in '%s'\n",
	        list);
	return -1;
}

/* -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, struct bench_settings *s,
                      unsigned *only)
{
	enum { O_HELP = 'h', O_QUICK = 256, O_JSON, O_ONLY };
	static const struct option longs[] = {
	    {"help", no_argument, NULL, O_HELP},
	    {"quick", no_argument, NULL, O_QUICK},
	    {"json", no_argument, NULL, O_JSON},
	    {"only", required_argument, NULL, O_ONLY},
	    {NULL, 0, NULL, 0},
	};
	struct tool_args a;
	tool_args_init(&a, argc, argv, "h", longs);
	a.dashdash_operand = true; /* no operands: refused */
	for (;;) {
		const char *v = NULL;
		int c = tool_getopt(&a, &v);
		if (c == TOOL_ARGS_END)
			return -1;
		if (c == O_HELP) {
			usage(stdout);
			return 0;
		} else if (c == O_QUICK) {
			s->quick = true;
		} else if (c == O_JSON) {
			report_set_json(true);
		} else if (c == O_ONLY && v != NULL) {
			if (parse_only(v, only) < 0)
				return 2;
		} else {
			fprintf(stderr,
			        "conduit-bench: unknown or incomplete option "
			        "'%s'\n",
			        c == O_ONLY ? "--only" : v);
			usage(stderr);
			return 2;
		}
	}
}

/* ------------------------------------------------------------------ */
/* Set-up, clean-up and output                                         */

/* Interrupted: kill the server, remove what we made, die of the signal.
 * Only async-signal-safe calls. */
static void on_signal(int sig)
{
	sock_interrupted();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void print_heading(const struct utsname *u, long cpus)
{
	printf("conduit-bench: conduit %d.%d.%d on %s %s %s, %ld CPUs%s\n",
	       CONDUIT_VERSION_MAJOR, CONDUIT_VERSION_MINOR,
	       CONDUIT_VERSION_PATCH, u->sysname, u->release, u->machine, cpus,
	       P.quick ? " (quick)" : "");
	if (G.cpu[0] >= 0)
		printf("Client on CPU %d, server on CPU %d. ", G.cpu[0],
		       G.cpu[1]);
	printf("%u repeats, each runs every variant back to back\n"
	       "(order rotating).  conduit, baseline, nng: medians of "
	       "the runs; c/base, c/nng:\nmedians of the repeats' "
	       "conduit/baseline and conduit/nng.  Throughput and\n"
	       "rates: higher is better; latency: lower is better.\n",
	       P.repeats);
}

static void print_json(const struct utsname *u, long cpus, unsigned only)
{
	printf("{\n  \"program\": \"conduit-bench\",\n  \"conduit_version\": "
	       "\"%d.%d.%d\",\n",
	       CONDUIT_VERSION_MAJOR, CONDUIT_VERSION_MINOR,
	       CONDUIT_VERSION_PATCH);
	printf("  \"machine\": {\"sysname\": ");
	json_str(u->sysname);
	printf(", \"release\": ");
	json_str(u->release);
	printf(", \"arch\": ");
	json_str(u->machine);
	printf(", \"cpus\": %ld, \"client_cpu\": %d, \"server_cpu\": %d},\n",
	       cpus, G.cpu[0], G.cpu[1]);
	printf("  \"mode\": \"%s\",\n  \"only\": ", P.quick ? "quick" : "full");
	if (only == 0) {
		printf("null");
	} else {
		int first = 1;
		putchar('[');
		for (size_t i = 0; i < NSECTIONS; i++)
			if (only & (1u << i)) {
				printf("%s\"%s\"", first ? "" : ", ",
				       sections[i].name);
				first = 0;
			}
		putchar(']');
	}
	printf(",\n  \"repeats\": %u,\n", P.repeats);
	sock_json();
	report_json_results();
}

int main(int argc, char **argv)
{
#ifdef CONDUIT_HAVE_VCHAN
	const char *role = getenv("CONDUIT_BENCH_ROLE");
	if (role != NULL)
		return bench_role_main(role);
#endif
	unsigned only = 0;
	struct bench_settings bs = {.quick = false};
	int status = parse_args(argc, argv, &bs, &only);
	if (status >= 0)
		return status;
	if (only == 0)
		only = ~0u;
	const unsigned only_asked = only == ~0u ? 0 : only;
	bs.repeats = bs.quick ? 3 : 11;
	bs.target_s = bs.quick ? 0.05 : 0.2;

	struct utsname u;
	if (uname(&u) < 0)
		memset(&u, 0, sizeof(u));
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	if (sock_init(&bs) < 0) {
		fprintf(stderr, "conduit-bench: %s\n", bench_errmsg);
		sock_cleanup();
		return 1;
	}
	tool_catch_signals(on_signal, 0);
	for (size_t i = 0; i < NSECTIONS; i++) {
		const struct section *sc = &sections[i];
		if ((only & (1u << i)) && sc->setup != NULL &&
		    sc->setup() < 0) {
			fprintf(stderr, "conduit-bench: %s\n", bench_errmsg);
			sock_cleanup();
			return 1;
		}
	}
	bool json = report_is_json();
	if (!json)
		print_heading(&u, cpus);
	sock_nng_note();
	for (size_t i = 0; i < NSECTIONS; i++)
		if ((only & (1u << i)) && sections[i].notes != NULL)
			sections[i].notes(bs.quick);
	if (!json) {
		printf("\n  %-25s %10s %10s %6s %10s %6s\n", "figure",
		       "conduit", "baseline", "c/base", "nng", "c/nng");
		fflush(stdout);
	}

	int rc = 0;
	for (size_t i = 0; i < NSECTIONS && rc == 0; i++) {
		const struct section *sc = &sections[i];
		if (!(only & (1u << i)))
			continue;
		if (sc->run != NULL)
			rc = sc->run(&bs);
		else
			bench_note("%s", sc->missing);
	}
	for (size_t i = 0; i < NSECTIONS && rc == 0; i++)
		if ((only & (1u << i)) && sections[i].epilogue != NULL)
			sections[i].epilogue();
	if (rc == 0)
		sock_epilogue();
	sock_cleanup();
	if (rc != 0 || report_overflowed())
		return 1;
	if (json)
		print_json(&u, cpus, only_asked);
	return 0;
}
