/*
 * sock_run.c - the host-socket sections: the servers, one run of one
 * figure for one variant, and the figures (unix, tcp, tls).
 *
 * All variants use the same process layout (a client and a server
 * process, on two different CPUs when there are two), the same buffer
 * sizes and the same verification, through the link layer (link.h), so
 * the only difference is the code between the application and the
 * kernel.  The figures:
 *
 *   throughput   one-way, 1/16/64 KiB writes; the server reads 64 KiB at a
 *                time, checks every byte against the pattern, and answers
 *                with one byte at the end; the clock runs from the first
 *                write to that byte.
 *   latency      64-byte ping-pong with an echoing server, one clock
 *                reading per round trip; median and 99th percentile.
 *   connections  sequential connect + accept + close: the server accepts
 *                (and for TLS completes the handshake) and closes, the
 *                client waits for the end of stream, closes and starts the
 *                next one.  nng has no end of stream to wait for: its
 *                client dials, sends one byte and waits for it to come
 *                back, then closes (one round trip more than the others).
 */
#include "sock.h"

#ifdef CONDUIT_HAVE_TLS
#include <conduit/tls.h>
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

const char *const api_name[NAPI] = {"baseline", "conduit", "nng"};
const char *const tr_name[] = {"unix", "tcp", "tls+tcp", "resolver"};
const char *const tr_base[] = {"raw syscalls", "raw syscalls", "raw mbedTLS",
                               "endpoint parse"};

struct sock_globals G;
struct params P;

/* ------------------------------------------------------------------ */
/* Set-up and clean-up                                                 */

/* Client and server each on their own CPU: without that, how the
 * scheduler happens to place the two processes (same CPU or not, moving
 * between them) changes a figure by more than conduit does.  Every
 * variant runs on the same placement.  Linux only; elsewhere the
 * scheduler decides. */
static void choose_cpus(void)
{
	G.cpu[0] = G.cpu[1] = -1;
#ifdef __linux__
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) < 0 || CPU_COUNT(&set) < 2)
		return;
	int n = 0;
	for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
		if (CPU_ISSET(c, &set))
			G.cpu[n++] = c;
#endif
}

/* unix:// + the path, percent-encoding anything not plainly safe. */
static void make_unix_uri(void)
{
	static const char hex[] = "0123456789ABCDEF";
	char *o = G.unix_uri;
	o += sprintf(o, "unix://");
	for (const char *s = G.sock; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || strchr("-._~/", c) != NULL) {
			*o++ = (char)c;
		} else {
			*o++ = '%';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	*o = '\0';
}

static int make_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	if (base == NULL || base[0] == '\0')
		base = "/tmp";
	size_t bl = strlen(base);
	while (bl > 1 && base[bl - 1] == '/')
		bl--;
	int n = snprintf(G.dir, sizeof(G.dir), "%.*s/conduit-bench.XXXXXX",
	                 (int)bl, base);
	if (n < 0 || (size_t)n >= sizeof(G.dir)) {
		G.dir[0] = '\0';
		return bench_fail("TMPDIR is too long");
	}
	if (mkdtemp(G.dir) == NULL) {
		bench_fail("mkdtemp %s: %s", G.dir, strerror(errno));
		G.dir[0] = '\0';
		return -1;
	}
	n = snprintf(G.sock, sizeof(G.sock), "%s/bench.sock", G.dir);
	struct sockaddr_un un;
	if (n < 0 || (size_t)n + 1 > sizeof(un.sun_path))
		return bench_fail("socket path %s is longer than a unix socket "
		                  "allows; set TMPDIR to a shorter directory",
		                  G.sock);
	make_unix_uri();
	return 0;
}

int sock_init(const struct bench_settings *s)
{
	static const struct params quick = {.warm_bytes = 4 * 1024 * 1024,
	                                    .rtt_warm = 100,
	                                    .rtt_n = 1000,
	                                    .conn_warm = 30,
	                                    .conn_n = 300,
	                                    .hs_warm = 5,
	                                    .hs_n = 40};
	static const struct params full = {.warm_bytes = 32 * 1024 * 1024,
	                                   .rtt_warm = 1000,
	                                   .rtt_n = 10000,
	                                   .conn_warm = 200,
	                                   .conn_n = 2000,
	                                   .hs_warm = 20,
	                                   .hs_n = 300};
	P = s->quick ? quick : full;
	P.quick = s->quick;
	P.repeats = s->repeats;
	P.target_s = s->target_s;
	choose_cpus();
	bench_pin(G.cpu[0]);
#ifdef CONDUIT_BENCH_NNG
	G.nng = true;
#endif
	if (make_tmpdir() < 0)
		return -1;
#ifdef CONDUIT_BENCH_NNG
	if (nng_shared_init(P.rtt_n) < 0)
		return -1;
#endif
	if (conduit_ctx_new(&G.ctx) != CONDUIT_OK)
		return bench_fail("conduit_ctx_new: out of memory");
	return 0;
}

void sock_cleanup(void)
{
	conduit_ctx_free(G.ctx);
	G.ctx = NULL;
#ifdef CONDUIT_HAVE_TLS
	tls_cleanup();
#endif
#ifdef CONDUIT_BENCH_NNG
	nng_shared_free();
#endif
	if (G.dir[0] != '\0')
		tool_rmtree(G.dir);
	G.dir[0] = '\0';
}

void sock_interrupted(void)
{
	pid_t pid = (pid_t)bench_child_pid;
	if (pid > 0)
		kill(pid, SIGKILL);
	if (G.sock[0] != '\0')
		unlink(G.sock);
	if (G.dir[0] != '\0')
		rmdir(G.dir);
}

void sock_nng_note(void)
{
#ifdef CONDUIT_BENCH_NNG
	bench_note("nng %s, pair1: message-based, one nng_send() per write "
	           "and one nng_recv()\nper read, throughput counts payload "
	           "bytes; its client is a forked process.",
	           nng_version_text());
#elif defined(CONDUIT_BENCH_NNG_LEFT_OUT)
	bench_note(
	    "nng: left out of this build, whose mbedTLS is compiled in "
	    "(nng brings Debian's\nown); -DCONDUIT_MBEDTLS=system brings "
	    "nng back.  Its columns say n/a.");
#else
	bench_note("nng: not found when this was built (Debian's libnng-dev), "
	           "so its columns say\nn/a.  nng is a benchmark-only "
	           "dependency: the library never needs it.");
#endif
}

void sock_json(void)
{
#ifdef CONDUIT_HAVE_TLS
	tls_json();
#else
	printf("  \"tls\": null,\n");
#endif
#ifdef CONDUIT_BENCH_NNG
	nng_json();
#else
	printf("  \"nng\": {\"built\": false},\n");
#endif
}

#ifdef CONDUIT_HAVE_TLS
int bench_tls_setup(void)
{
	if (tls_setup() < 0) {
		char why[sizeof(bench_errmsg)];
		snprintf(why, sizeof(why), "%s", bench_errmsg);
		return bench_fail("TLS set-up: %.480s", why);
	}
#ifdef CONDUIT_BENCH_NNG
	nng_tls_setup();
#endif
	return 0;
}

void bench_tls_notes(bool quick)
{
	tls_notes(quick);
#ifdef CONDUIT_BENCH_NNG
	if (nng_tls_missing() != NULL)
		bench_note("%s", nng_tls_missing());
#endif
}
#endif

void sock_epilogue(void)
{
	if (!report_is_json() && nng_state_of(T_TCP) == NNG_MEASURED)
		printf("nng connections: dial, one byte there and back, close "
		       "(nng has no end of\nstream to wait for).\n");
}

/* ------------------------------------------------------------------ */
/* Servers: a child listens, tells the parent where (READY), serves,    */
/* and reports what it saw (DONE) or what broke (ERROR).                */

struct job {
	enum link_role role;
	enum api api;
	enum transport tr;
	uint64_t amount; /* bytes to receive or echo, or connections */
};

static int serve(struct listener *L, const struct job *job,
                 struct bench_report *rep)
{
#ifdef CONDUIT_BENCH_NNG
	if (job->role == ROLE_ACCEPT && L->api == API_NNG)
		return nng_serve_accept(L, job->amount, rep);
#endif
	struct sock_link k;
	if (job->role != ROLE_ACCEPT) {
		if (lsn_accept(L, &k) < 0)
			return -1;
		return link_serve(&k.base, job->role, job->amount, rep);
	}
	for (uint64_t i = 0; i < job->amount; i++) {
		if (lsn_accept(L, &k) < 0)
			return -1;
		k.base.ops->close(&k.base);
		rep->count++;
	}
	return 0;
}

/* Not inlined, so that a profile of a child can start here:
 * valgrind --tool=callgrind --trace-children=yes --zero-before=child_main */
__attribute__((noinline)) static int child_main(const void *arg, int wfd)
{
	const struct job *job = arg;
	struct bench_report rep;
	memset(&rep, 0, sizeof(rep));
	rep.bad_at = UINT64_MAX;

	/* The parent's context is a copy here; this side has its own. */
	conduit_ctx_free(G.ctx);
	G.ctx = NULL;
	conduit_ctx *ctx = NULL;
	struct listener L;
	int r = -1;
#ifdef CONDUIT_HAVE_TLS
	int crc = CONDUIT_OK;
	/* Not the client's random numbers: its generator was copied. */
	rt_reseed_server();
#endif
	if (job->api == API_CONDUIT && conduit_ctx_new(&ctx) != CONDUIT_OK)
		bench_fail("conduit_ctx_new: out of memory");
#ifdef CONDUIT_HAVE_TLS
	else if (job->api == API_CONDUIT && job->tr == T_TLS &&
	         (crc = conduit_tls_set_cert_pem(
	              ctx, G.cert_pem, strlen(G.cert_pem), G.key_pem,
	              strlen(G.key_pem), NULL)) != CONDUIT_OK)
		bench_fail("conduit_tls_set_cert_pem: %s",
		           bench_cerr(conduit_ctx_error(ctx), crc));
#endif
	else if (lsn_open(&L, job->api, job->tr, ctx,
	                  job->role == ROLE_ACCEPT) == 0) {
		rep.kind = MSG_READY;
		rep.port = L.port;
		snprintf(rep.text, sizeof(rep.text), "%s", L.uri);
		if (bench_child_report(wfd, &rep) == 0) {
			r = serve(&L, job, &rep);
#ifdef CONDUIT_BENCH_NNG
			if (r == 0 && job->api == API_NNG)
				r = nng_wait_gone(job->role == ROLE_ACCEPT
				                      ? (unsigned)job->amount
				                      : 1);
#endif
		} else {
			bench_fail("report pipe: %s", strerror(errno));
		}
		lsn_close(&L);
	}
	rep.kind = r == 0 ? MSG_DONE : MSG_ERROR;
	if (r != 0)
		snprintf(rep.text, sizeof(rep.text), "%s", bench_errmsg);
	bench_child_report(wfd, &rep);
	close(wfd);
	conduit_ctx_free(ctx);
	return r == 0 ? 0 : 1;
}

/* Fork a server for job; returns once it listens, with t telling where. */
static int server_start(struct bench_child *c, const struct job *job,
                        struct target *t)
{
	struct bench_report rep;
	memset(t, 0, sizeof(*t));
	if (bench_child_start(c, G.cpu[1], child_main, job, &rep) < 0)
		return -1;
	t->tr = job->tr;
	snprintf(t->uri, sizeof(t->uri), "%s", rep.text);
	if (job->tr == T_UNIX) {
		struct sockaddr_un *un = (struct sockaddr_un *)&t->sa;
		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, G.sock, strlen(G.sock) + 1);
		t->salen = sizeof(*un);
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)&t->sa;
		in->sin_family = AF_INET;
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		in->sin_port = htons((uint16_t)(rep.port > 0 ? rep.port : 0));
		t->salen = sizeof(*in);
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* One run of one figure for one variant.                              */

/* A throughput or latency run against a server of its own. */
static int run_stream(enum api api, enum transport tr, struct link_run *run)
{
	struct job job = {run->role, api, tr, run->total};
	struct bench_child c;
	struct target t;
	struct sock_link k;
	if (server_start(&c, &job, &t) < 0)
		return -1;
	bool up = link_connect(&k, api, &t) == 0;
	return link_client(&c, up ? &k.base : NULL, run);
}

int run_throughput(enum api api, enum transport tr, size_t ws, uint64_t total,
                   double *secs)
{
#ifdef CONDUIT_BENCH_NNG
	if (api == API_NNG && !nng_in_client())
		return nng_run_throughput(tr, ws, total, secs);
#endif
	struct link_run run = {.role = ROLE_SINK, .ws = ws, .total = total};
	if (run_stream(api, tr, &run) < 0)
		return -1;
	*secs = (double)run.ns / 1e9;
	return 0;
}

/* Round-trip times in ns go to samples[0..n). */
int run_latency(enum api api, enum transport tr, unsigned warm, unsigned n,
                uint64_t *samples)
{
#ifdef CONDUIT_BENCH_NNG
	if (api == API_NNG && !nng_in_client())
		return nng_run_latency(tr, warm, n, samples);
#endif
	struct link_run run = {.role = ROLE_ECHO,
	                       .total = (uint64_t)(warm + n) * LINK_PING,
	                       .warm = warm,
	                       .n = n,
	                       .samples = samples};
	return run_stream(api, tr, &run);
}

/* One connection of a connection figure: 0, or -1. */
static int connect_once(struct sock_link *k, unsigned i, bool resume)
{
	unsigned char c = 'h';
	size_t m = 0;
	int g = 0;
#ifdef CONDUIT_HAVE_TLS
	if (resume && i == 0)
		g = keep_session(k);
	else if (resume && !link_resumed(k))
		g = bench_fail("connection %u offered a session and got a "
		               "full handshake",
		               i);
#else
	(void)i;
	(void)resume; /* TLS only */
#endif
	if (g != 0) {
		/* Already failed. */
	} else if (k->api == API_NNG) {
		/* No end of stream in nng: one byte there and back says
		 * the server has the connection. */
		g = k->base.ops->write_all(&k->base, &c, 1);
		if (g == 0 && (g = k->base.ops->read(&k->base, &c, 1, &m)) > 0)
			g = m == 1 && c == 'h'
			        ? 0
			        : bench_fail("the greeting came back changed");
	} else {
		/* End of stream says the server has accepted (and for TLS
		 * handshaked) and closed. */
		g = k->base.ops->read(&k->base, &c, 1, &m);
		if (g > 0)
			g = bench_fail("the server sent data");
	}
	k->base.ops->close(&k->base);
	return g == 0 ? 0 : -1;
}

/* resume: TLS only; every connection after the first resumes its
 * session (and must: a full one is an error here). */
int run_connect(enum api api, enum transport tr, bool resume, unsigned warm,
                unsigned n, double *secs)
{
#ifdef CONDUIT_BENCH_NNG
	if (api == API_NNG && !nng_in_client())
		return nng_run_connect(tr, warm, n, secs);
#endif
	struct job job = {ROLE_ACCEPT, api, tr, (uint64_t)warm + n};
	struct bench_child c;
	struct target t;
	struct bench_report rep;
	if (server_start(&c, &job, &t) < 0)
		return -1;
	uint64_t t0 = tool_now_ns();
	int r = 0;
	for (unsigned i = 0; i < warm + n && r == 0; i++) {
		if (i == warm)
			t0 = tool_now_ns();
		struct sock_link k;
		r = link_connect(&k, api, &t);
		if (r == 0)
			r = connect_once(&k, i, resume);
	}
	uint64_t t1 = tool_now_ns();
#ifdef CONDUIT_HAVE_TLS
	if (resume)
		drop_sessions();
#endif
	if (r < 0) {
		bench_child_abort(&c);
		return -1;
	}
	if (bench_child_finish(&c, &rep) < 0 ||
	    link_check_count(&rep, (uint64_t)warm + n, "the server accepted",
	                     "connections") < 0)
		return -1;
	*secs = (double)(t1 - t0) / 1e9;
	return 0;
}

/* ------------------------------------------------------------------ */
/* The figures                                                         */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

enum nng_state nng_state_of(enum transport tr)
{
	if (tr == T_RESOLVE)
		return NNG_NONE;
	if (!G.nng || (tr == T_TLS && !G.nng_tls))
		return NNG_MISSING;
	return NNG_MEASURED;
}

struct row *add_row(enum transport tr, const char *figure, const char *unit,
                    bool higher_better, int decimals)
{
	return report_row(tr_name[tr], figure, unit, higher_better, decimals,
	                  tr_base[tr], nng_state_of(tr));
}

void order_of(struct order *o, enum transport tr, unsigned i, bool with_nng)
{
	enum api all[NAPI] = {API_RAW, API_CONDUIT, API_NNG};
	unsigned n = with_nng && nng_state_of(tr) == NNG_MEASURED ? 3 : 2;
	o->n = n;
	for (unsigned k = 0; k < n; k++)
		o->v[k] = all[(i + k) % n];
}

/*
 * nng is the comparison, not the thing measured: when one of its runs
 * fails (it has failed to close a TLS connection in time on a loaded
 * machine), the figure goes on without it and says so, rather than the
 * whole benchmark stopping.
 */
static void nng_gives_up(struct row **rs, size_t n, enum transport tr,
                         const char *what)
{
	fprintf(stderr,
	        "conduit-bench: %s %s (nng): %s; going on without nng for "
	        "this figure\n",
	        tr_name[tr], what, bench_errmsg);
	for (size_t i = 0; i < n; i++)
		rs[i]->nng = NNG_FAILED;
}

int fail_figure(enum transport tr, const char *what, enum api api)
{
	fprintf(stderr, "conduit-bench: %s %s (%s): %s\n", tr_name[tr], what,
	        api_name[api], bench_errmsg);
	return -1;
}

static int measure_throughput(enum transport tr, size_t ws)
{
	char what[40];
	snprintf(what, sizeof(what), "throughput %u KiB",
	         (unsigned)(ws / 1024));

	/* Warm-up, which also tells how many bytes make a run of about
	 * target_s at the fastest variant's pace; every variant then moves
	 * exactly that many in every run. */
	uint64_t warm = (P.warm_bytes + ws - 1) / ws * ws;
	double rate = 0;
	struct order o;
	order_of(&o, tr, 0, true);
	bool nng_ok = true;
	for (unsigned k = 0; k < o.n; k++) {
		double s = 0;
		if (run_throughput(o.v[k], tr, ws, warm, &s) < 0) {
			if (o.v[k] != API_NNG)
				return fail_figure(tr, what, o.v[k]);
			nng_ok = false;
			continue;
		}
		if (s > 0 && (double)warm / s > rate)
			rate = (double)warm / s;
	}
	double want = rate * P.target_s;
	if (want < (double)warm)
		want = (double)warm;
	if (want > 64.0 * 1024 * MIB)
		want = 64.0 * 1024 * MIB;
	uint64_t total = ((uint64_t)want + ws - 1) / ws * ws;

	struct row *r = add_row(tr, "throughput", "MiB/s", true, 1);
	if (r == NULL) {
		bench_fail("too many figures");
		return fail_figure(tr, what, API_RAW);
	}
	snprintf(r->label, sizeof(r->label), "throughput %u KiB (MiB/s)",
	         (unsigned)(ws / 1024));
	if (!nng_ok)
		nng_gives_up(&r, 1, tr, what);
	bench_copy(r->param_name, sizeof(r->param_name), "write_size");
	r->param = ws;
	r->amount_name = "bytes_per_run";
	r->amount = total;
	for (unsigned i = 0; i < P.repeats; i++) {
		double v[NAPI] = {0, 0, 0};
		order_of(&o, tr, i, r->nng == NNG_MEASURED);
		for (unsigned k = 0; k < o.n; k++) {
			enum api a = o.v[k];
			double s = 0;
			if (run_throughput(a, tr, ws, total, &s) < 0) {
				if (a != API_NNG)
					return fail_figure(tr, what, a);
				nng_gives_up(&r, 1, tr, what);
				continue;
			}
			v[a] = s > 0 ? (double)total / MIB / s : 0;
		}
		row_add(r, v);
	}
	row_finish(r);
	return 0;
}

static int measure_latency(enum transport tr)
{
	struct row *rm = add_row(tr, "latency_median", "us", false, 2);
	struct row *rp = add_row(tr, "latency_p99", "us", false, 2);
	uint64_t *s = calloc(P.rtt_n, sizeof(*s));
	if (rm == NULL || rp == NULL || s == NULL) {
		free(s);
		bench_fail(s == NULL ? "out of memory" : "too many figures");
		return fail_figure(tr, "latency", API_RAW);
	}
	snprintf(rm->label, sizeof(rm->label), "latency %d B median (us)",
	         LINK_PING);
	snprintf(rp->label, sizeof(rp->label), "latency %d B p99 (us)",
	         LINK_PING);
	struct row *both[2] = {rm, rp};
	for (int j = 0; j < 2; j++) {
		bench_copy(both[j]->param_name, sizeof(both[j]->param_name),
		           "message_size");
		both[j]->param = LINK_PING;
		both[j]->amount_name = "round_trips";
		both[j]->amount = P.rtt_n;
	}
	for (unsigned i = 0; i < P.repeats; i++) {
		double med[NAPI] = {0, 0, 0}, p99[NAPI] = {0, 0, 0};
		struct order o;
		order_of(&o, tr, i, rm->nng == NNG_MEASURED);
		for (unsigned k = 0; k < o.n; k++) {
			enum api a = o.v[k];
			if (run_latency(a, tr, P.rtt_warm, P.rtt_n, s) < 0) {
				if (a == API_NNG) {
					nng_gives_up(both, 2, tr, "latency");
					continue;
				}
				free(s);
				return fail_figure(tr, "latency", a);
			}
			qsort(s, P.rtt_n, sizeof(*s), cmp_u64);
			med[a] = (double)s[P.rtt_n / 2] / 1000.0;
			p99[a] = (double)s[(size_t)P.rtt_n * 99 / 100] / 1000.0;
		}
		row_add(rm, med);
		row_add(rp, p99);
	}
	free(s);
	row_finish(rm);
	row_finish(rp);
	return 0;
}

static int measure_connect(enum transport tr, bool resume)
{
	bool tls = tr == T_TLS;
	const char *what = resume ? "resumed handshakes"
	                   : tls  ? "full handshakes"
	                          : "connections";
	struct row *r = add_row(tr,
	                        resume ? "handshake_resumed_rate"
	                        : tls  ? "handshake_full_rate"
	                               : "connect_rate",
	                        "1/s", true, 0);
	if (r == NULL) {
		bench_fail("too many figures");
		return fail_figure(tr, what, API_RAW);
	}
	/* nng keeps no TLS sessions: it has no resumed handshake. */
	if (resume)
		r->nng = NNG_NONE;
	snprintf(r->label, sizeof(r->label), "%s",
	         resume ? "resumed handshakes (/s)"
	         : tls  ? "full handshakes (/s)"
	                : "connect+accept+close (/s)");
	unsigned warm = tls ? P.hs_warm : P.conn_warm;
	unsigned n = tls ? P.hs_n : P.conn_n;
	r->amount_name = "connections";
	r->amount = n;
	for (unsigned i = 0; i < P.repeats; i++) {
		double v[NAPI] = {0, 0, 0};
		struct order o;
		order_of(&o, tr, i, r->nng == NNG_MEASURED);
		for (unsigned k = 0; k < o.n; k++) {
			enum api a = o.v[k];
			double s = 0;
			if (run_connect(a, tr, resume, warm, n, &s) < 0) {
				if (a != API_NNG)
					return fail_figure(tr, what, a);
				nng_gives_up(&r, 1, tr, what);
				continue;
			}
			v[a] = s > 0 ? n / s : 0;
		}
		row_add(r, v);
	}
	row_finish(r);
	return 0;
}

static int run_transport(enum transport tr)
{
	static const size_t sizes[] = {1024, 16 * 1024, 64 * 1024};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		if (measure_throughput(tr, sizes[i]) < 0)
			return -1;
	if (measure_latency(tr) < 0 || measure_connect(tr, false) < 0)
		return -1;
#ifdef CONDUIT_HAVE_TLS
	if (tr == T_TLS && measure_connect(tr, true) < 0)
		return -1;
#endif
	return 0;
}

int bench_unix(const struct bench_settings *s)
{
	(void)s;
	return run_transport(T_UNIX);
}

int bench_tcp(const struct bench_settings *s)
{
	(void)s;
	return run_transport(T_TCP);
}

#ifdef CONDUIT_HAVE_TLS
int bench_tls(const struct bench_settings *s)
{
	(void)s;
#ifdef CONDUIT_BENCH_NNG
	nng_pin(true); /* the forked processes inherit it */
#endif
	int rc = run_transport(T_TLS);
#ifdef CONDUIT_BENCH_NNG
	nng_pin(false);
#endif
	return rc;
}
#endif
