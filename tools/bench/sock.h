/*
 * sock.h - what the host-socket sections of conduit-bench share (unix,
 * tcp, tls, and the resolver's figure in the same table).
 *
 *   sock_link.c  the variants' links and listeners: raw sockets, conduit,
 *                raw mbedTLS on a raw socket, nng
 *   sock_run.c   the servers, one run of one figure, the figures, and
 *                the sections' entry points
 *   tls.c        raw mbedTLS, the pinned suite and the certificate (TLS
 *                builds)
 *   nng.c        nng's sockets and its pinning (builds with nng)
 *   resolver.c   rule-based resolutions against parsing alone
 *
 * Every figure is measured with up to three variants in the same run: the
 * baseline (raw syscalls, or raw mbedTLS for TLS), conduit, and nng.  The
 * servers are forked processes (link.h); nng's client is a forked process
 * too (nng refuses to run in a process that forks after it has started).
 */
#ifndef CONDUIT_TOOLS_BENCH_SOCK_H
#define CONDUIT_TOOLS_BENCH_SOCK_H

#include "bench.h"
#include "link.h"
#include "report.h"

#include <conduit/conduit.h>

#include <limits.h>
#include <stdbool.h>
#include <sys/socket.h>

/* Every wait is bounded; generous so that a loaded machine or valgrind
 * does not turn slowness into a failure. */
#define IO_TIMEOUT_MS 30000
#define MIB           (1024.0 * 1024.0)
/* Room for any URI here: a socket path is under 108 bytes, 3x encoded. */
#define URI_MAX 512
/* The name in the TLS certificate, which every client verifies. */
#define TLS_NAME "bench.test"

enum transport { T_UNIX, T_TCP, T_TLS, T_RESOLVE };
extern const char *const api_name[NAPI];
/* The transport column and JSON field; what each one's baseline is. */
extern const char *const tr_name[];
extern const char *const tr_base[];

/* Process-wide state. */
struct sock_globals {
	char dir[PATH_MAX];  /* private temporary directory */
	char sock[PATH_MAX]; /* dir/bench.sock */
	char unix_uri[URI_MAX];
	conduit_ctx *ctx;    /* the client side's context */
	int cpu[2];          /* client and server CPU, -1: not pinned */
	bool nng;            /* nng figures are measured */
	bool nng_tls;        /* nng's build has TLS */
	char cert_pem[2048]; /* the TLS server's certificate, PEM */
	char key_pem[1024];  /* and its key */
};
extern struct sock_globals G;

/* How much each figure measures (from --quick). */
struct params {
	bool quick;
	unsigned repeats;    /* rounds of runs (one per variant) */
	double target_s;     /* aimed-at length of one throughput run */
	uint64_t warm_bytes; /* warm-up and calibration run */
	unsigned rtt_warm, rtt_n;
	unsigned conn_warm, conn_n;
	unsigned hs_warm, hs_n; /* TLS handshakes */
};
extern struct params P;

/* Set up what every host-socket figure uses: the parameters, the CPUs,
 * the temporary directory and the client's context; sock_cleanup()
 * undoes it (also after a failure here). */
int sock_init(const struct bench_settings *s);
void sock_cleanup(void);
/* From a signal handler: kill the server, remove the socket and the
 * directory (async-signal-safe calls only). */
void sock_interrupted(void);
/* The line about nng, before the table; the one after it. */
void sock_nng_note(void);
void sock_epilogue(void);
/* The JSON output's "tls" and "nng" members. */
void sock_json(void);
/* The tls section's set-up before the table, and its notes. */
int bench_tls_setup(void);
void bench_tls_notes(bool quick);
/* The resolver's line after the table. */
void bench_resolver_epilogue(void);

/* ------------------------------------------------------------------ */
/* Links and listeners (sock_link.c)                                   */

struct rtls;

/* One connection, any variant.  The switch in its calls costs every
 * variant the same predictable branch. */
struct sock_link {
	struct bench_link base;
	enum api api;
	int fd;
	conduit_flow *flow;
	struct rtls *rt; /* raw mbedTLS, on fd */
#ifdef CONDUIT_BENCH_NNG
	unsigned ns; /* an nng_socket's id */
	bool ns_own; /* a client's socket; a server's is the listener's */
#endif
};

struct target {
	enum transport tr;
	char uri[URI_MAX];          /* what conduit or nng connects to */
	struct sockaddr_storage sa; /* what raw sockets connect to */
	socklen_t salen;
};

struct listener {
	enum api api;
	enum transport tr;
	int fd;
	conduit_ctx *ctx;
	conduit_listener *l;
#ifdef CONDUIT_BENCH_NNG
	unsigned ns; /* an nng_socket's id */
	bool ns_open;
#endif
	char uri[URI_MAX];
	int port;
};

void link_init(struct sock_link *k, enum api api);
int link_connect(struct sock_link *k, enum api api, const struct target *t);
/* poly: an nng server that answers many clients (the connection figure). */
int lsn_open(struct listener *L, enum api api, enum transport tr,
             conduit_ctx *ctx, bool poly);
int lsn_accept(struct listener *L, struct sock_link *k);
void lsn_close(struct listener *L);
/* Wait until fd is ready for events (bounded). */
int raw_wait(int fd, short events);

/* ------------------------------------------------------------------ */
/* One run of one figure (sock_run.c), for nng.c's forked client too   */

int run_throughput(enum api api, enum transport tr, size_t ws, uint64_t total,
                   double *secs);
int run_latency(enum api api, enum transport tr, unsigned warm, unsigned n,
                uint64_t *samples);
int run_connect(enum api api, enum transport tr, bool resume, unsigned warm,
                unsigned n, double *secs);

/* The table's rows of transport tr, and the variants' order in round i:
 * rotating, so that none always runs on a cold or a warm machine. */
enum nng_state nng_state_of(enum transport tr);
struct row *add_row(enum transport tr, const char *figure, const char *unit,
                    bool higher_better, int decimals);
struct order {
	unsigned n;
	enum api v[NAPI];
};
void order_of(struct order *o, enum transport tr, unsigned i, bool with_nng);
int fail_figure(enum transport tr, const char *what, enum api api);

/* ------------------------------------------------------------------ */
/* TLS (tls.c)                                                         */

#ifdef CONDUIT_HAVE_TLS
/* The certificate, raw mbedTLS's configurations and the client context's
 * trust in the certificate. */
int tls_setup(void);
void tls_cleanup(void);
/* The notes before the table: the suite, and the cipher's ceiling. */
void tls_notes(bool quick);
void tls_json(void);
/* Wrap a connected socket (taken over, closed on failure) and
 * handshake; a client checks the pinned suite was negotiated. */
int rt_open(struct rtls **out, int fd, bool server);
int rt_write_all(struct rtls *t, const void *buf, size_t len);
int rt_read(struct rtls *t, void *buf, size_t cap, size_t *got);
void rt_close(struct rtls *t);
/* The suite t negotiated. */
const char *rt_suite(struct rtls *t);
/* Every TLS connection must have negotiated the pinned suite. */
int check_suite(const char *name);
const char *pin_suite_name(void);
/* Pin a configuration to the suite, its curve and TLS 1.2. */
struct mbedtls_ssl_config;
void pin_conf(struct mbedtls_ssl_config *c);
/* After a fork: the server's random numbers are not the client's. */
void rt_reseed_server(void);
/* Resumed handshakes: keep the first connection's session, to be offered
 * by every later one; whether it was resumed; the run is over. */
int keep_session(struct sock_link *k);
bool link_resumed(struct sock_link *k);
void drop_sessions(void);
#endif

/* ------------------------------------------------------------------ */
/* nng (nng.c)                                                         */

#ifdef CONDUIT_BENCH_NNG
int nng_dial_uri(unsigned *ns, enum transport tr, const char *uri);
int nng_link_write(unsigned ns, const void *buf, size_t len);
int nng_link_read(unsigned ns, void *buf, size_t cap, size_t *got);
void nng_link_close(unsigned ns);
int nng_lsn_open(struct listener *L, enum transport tr, bool poly);
/* The connection figure's server: each client's greeting answered. */
int nng_serve_accept(struct listener *L, uint64_t n, struct bench_report *rep);
/* Before it closes, a server waits for its clients to go. */
int nng_wait_gone(unsigned want);
/* A run of API_NNG: in a forked client (nng refuses to start in a process
 * that forks afterwards). */
int nng_run_throughput(enum transport tr, size_t ws, uint64_t total,
                       double *secs);
int nng_run_latency(enum transport tr, unsigned warm, unsigned n,
                    uint64_t *samples);
int nng_run_connect(enum transport tr, unsigned warm, unsigned n, double *secs);
/* This process is the forked client: API_NNG runs here. */
bool nng_in_client(void);
/* The room for the forked client's results; its release. */
int nng_shared_init(unsigned samples);
void nng_shared_free(void);
/* For the tls section: whether nng's TLS is there (asked in a child), and
 * the suite pinned on nng's connections alone. */
void nng_tls_setup(void);
void nng_json(void);
/* The pinning applies while the TLS figures run; the connections it
 * pinned. */
void nng_pin(bool on);
unsigned long nng_pinned(void);
/* Why nng has no TLS figures, as a note; NULL when it has. */
const char *nng_tls_missing(void);
/* "MAJOR.MINOR.PATCH" of the nng built against. */
const char *nng_version_text(void);
#endif

#endif
