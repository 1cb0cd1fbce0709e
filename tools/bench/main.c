/*
 * bench.c - conduit-bench: what conduit costs on top of what it wraps,
 * beside what a user would otherwise pick (nng).
 *
 * This file owns the command line, the table and the JSON output, and
 * measures the host-socket transports (unix, tcp), TLS over tcp and the
 * resolver.  The sections in bench_vchan.c, bench_lwip.c and bench_scale.c
 * hand their figures to bench_emit() (bench.h).
 *
 * Every figure here is measured with up to three variants in the same run:
 *
 *   conduit   the public API the way an application uses it (URIs,
 *             conduit_connect_wait, conduit_accept_wait, conduit_write_all,
 *             conduit_read_wait);
 *   baseline  the same work done directly on what conduit wraps: raw
 *             sockets (non-blocking descriptors, send/recv, poll(2) when
 *             they would block, TCP_NODELAY where conduit sets it), or for
 *             TLS raw mbedTLS (mbedtls_ssl_* on such a socket);
 *   nng       nng's pair1 protocol over ipc://, tcp:// and tls+tcp://
 *             (a benchmark-only dependency, never one of the library).
 *             nng moves messages, not a byte stream: every write is one
 *             nng_send() of the write size and every read one nng_recv();
 *             throughput counts payload bytes only.
 *
 * All variants use the same process layout (a client and a server process,
 * on two different CPUs when there are two), the same buffer sizes and the
 * same verification, through the small "link" switch below, so the only
 * difference is the code between the application and the kernel.  nng
 * cannot run in a process that forks after nng has started (it refuses),
 * so its client is a forked process too, where the other variants' client
 * is this process; both are pinned to the same CPU.  The figures:
 *
 *   throughput   one-way, 1/16/64 KiB writes; the server reads 64 KiB at a
 *                time, checks every byte against a pattern of 64-bit words
 *                derived from the offset, and answers with one byte at the
 *                end; the clock runs from the first write to that byte.
 *   latency      64-byte ping-pong with an echoing server, one clock
 *                reading per round trip; median and 99th percentile.
 *   connections  sequential connect + accept + close: the server accepts
 *                (and for TLS completes the handshake) and closes, the
 *                client waits for the end of stream, closes and starts the
 *                next one.  nng has no end of stream to wait for: its
 *                client dials, sends one byte and waits for it to come
 *                back, then closes (one round trip more than the others).
 *
 * TLS pins one suite for all three variants (TLS 1.2,
 * ECDHE-ECDSA-AES128-GCM-SHA256, curve P-256), with one EC P-256
 * certificate made in memory at start; every client verifies it and the
 * server name.  nng's API cannot choose a suite, so the mbedTLS
 * configurations of the whole process are pinned where each connection
 * is set up (see pin_setup below).
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
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "bench.h"

#include <conduit/conduit.h>
#ifdef CONDUIT_HAVE_TLS
#include <conduit/tls.h>

#include "certs.h"

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/gcm.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_cache.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
#define RT_PRIV(x) MBEDTLS_PRIVATE(x)
#else
#define RT_PRIV(x) x
#endif
#endif
#ifdef CONDUIT_BENCH_NNG
#include <nng/nng.h>
#include <nng/protocol/pair1/pair.h>
#include <nng/supplemental/tls/tls.h>
#endif

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

/* Every wait is bounded; generous so that a loaded machine or valgrind
 * does not turn slowness into a failure. */
#define IO_TIMEOUT_MS 30000
/* A child that outlives this is stuck: SIGALRM ends it. */
#define CHILD_WATCHDOG_S 600
/* The receiver's read size, the same for every variant. */
#define RBUF_SIZE (64 * 1024)
#define PING_SIZE 64
#define MIB       (1024.0 * 1024.0)
/* Room for any URI here: a socket path is under 108 bytes, 3x encoded. */
#define URI_MAX 512
/* The name in the TLS certificate, which every client verifies. */
#define TLS_NAME "bench.test"

enum api { API_RAW, API_CONDUIT, API_NNG, NAPI };
enum transport { T_UNIX, T_TCP, T_TLS, T_RESOLVE };
static const char *const api_name[NAPI] = {"baseline", "conduit", "nng"};
/* The transport column and JSON field. */
static const char *const tr_name[] = {"unix", "tcp", "tls+tcp", "resolver"};
/* What each transport's baseline is. */
static const char *const tr_base[] = {"raw syscalls", "raw syscalls",
                                      "raw mbedTLS", "endpoint parse"};

/* ------------------------------------------------------------------ */
/* Errors: helpers record a message and return -1; the caller adds     */
/* what it was doing and reports it.                                   */

static char errmsg[512];

__attribute__((format(printf, 1, 2))) static int set_err(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errmsg, sizeof(errmsg), fmt, ap);
	va_end(ap);
	return -1;
}

/* A failed conduit call's message: the object's detail if it has one. */
static const char *cerr(const char *detail, int rc)
{
	return detail != NULL && detail[0] != '\0' ? detail
	                                           : conduit_strerror(rc);
}

/* ------------------------------------------------------------------ */
/* Process-wide state                                                  */

static struct {
	char dir[PATH_MAX];  /* private temporary directory */
	char sock[PATH_MAX]; /* dir/bench.sock */
	char unix_uri[URI_MAX];
	conduit_ctx *ctx;    /* the client side's context */
	int cpu[2];          /* client and server CPU, -1: not pinned */
	bool nng;            /* nng figures are measured */
	bool nng_tls;        /* nng's build has TLS */
	char cert_pem[2048]; /* the TLS server's certificate, PEM */
	char key_pem[1024];  /* and its key */
} G;

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

/* For the signal handler: what to kill and remove if we are interrupted. */
static volatile sig_atomic_t child_pid;

/* A forked process that must die with the one that made it. */
static void child_setup(pid_t parent, int cpu)
{
#ifdef __linux__
	prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
	if (getppid() != parent)
		_exit(1); /* the parent died before prctl took hold */
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	alarm(CHILD_WATCHDOG_S);
	child_pid = 0;
	bench_pin(cpu);
}

/* ------------------------------------------------------------------ */
/* TLS: the certificate, the pinned suite and raw mbedTLS               */

#ifdef CONDUIT_HAVE_TLS
/* One suite, one curve, one version for every variant. */
static const int pin_suites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    0,
};
#if MBEDTLS_VERSION_NUMBER >= 0x03010000
static const uint16_t pin_groups[] = {
    MBEDTLS_SSL_IANA_TLS_GROUP_SECP256R1,
    MBEDTLS_SSL_IANA_TLS_GROUP_NONE,
};
#else
static const mbedtls_ecp_group_id pin_curves[] = {
    MBEDTLS_ECP_DP_SECP256R1,
    MBEDTLS_ECP_DP_NONE,
};
#endif

static void pin_conf(mbedtls_ssl_config *c)
{
	mbedtls_ssl_conf_ciphersuites(c, pin_suites);
#if MBEDTLS_VERSION_NUMBER >= 0x03010000
	mbedtls_ssl_conf_groups(c, pin_groups);
#else
	mbedtls_ssl_conf_curves(c, pin_curves);
#endif
#if MBEDTLS_VERSION_NUMBER >= 0x03020000
	mbedtls_ssl_conf_min_tls_version(c, MBEDTLS_SSL_VERSION_TLS1_2);
	mbedtls_ssl_conf_max_tls_version(c, MBEDTLS_SSL_VERSION_TLS1_2);
#else
	mbedtls_ssl_conf_min_version(c, MBEDTLS_SSL_MAJOR_VERSION_3,
	                             MBEDTLS_SSL_MINOR_VERSION_3);
	mbedtls_ssl_conf_max_version(c, MBEDTLS_SSL_MAJOR_VERSION_3,
	                             MBEDTLS_SSL_MINOR_VERSION_3);
#endif
}

static const char *pin_suite_name(void)
{
	return mbedtls_ssl_get_ciphersuite_name(pin_suites[0]);
}

#ifdef CONDUIT_BENCH_NNG
/*
 * nng offers no way to choose a cipher suite, and its default list would
 * negotiate another suite (and curve) than conduit's.  So this program
 * defines mbedtls_ssl_setup() itself: the dynamic linker then sends nng's
 * calls (and conduit's, linked in statically) here, and each connection's
 * configuration is pinned to the same suite, curve and version before the
 * real function (the next definition, mbedTLS's own) runs.  For conduit
 * and raw mbedTLS this changes nothing they would not negotiate anyway.
 * The count lets the nng variant check that its connections came by.  A
 * benchmark-only device: nothing in the library does this.
 */
typedef int (*ssl_setup_fn)(mbedtls_ssl_context *, const mbedtls_ssl_config *);
static ssl_setup_fn real_ssl_setup;
static pthread_mutex_t pin_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long pin_setups;
/* Pinning only while the TLS figures run: other sections' TLS flows
 * (bench_scale.c) keep conduit's own configuration. */
static bool pin_active;

static int pin_find_real(void)
{
	void *p = dlsym(RTLD_NEXT, "mbedtls_ssl_setup");
	if (p == NULL)
		return set_err("mbedtls_ssl_setup not found in mbedTLS: %s",
		               dlerror());
	memcpy(&real_ssl_setup, &p, sizeof(p));
	return 0;
}

int mbedtls_ssl_setup(mbedtls_ssl_context *ssl, const mbedtls_ssl_config *conf)
{
	/* nng sets connections up in its own threads; the lock keeps two
	 * of them from writing one configuration at once. */
	pthread_mutex_lock(&pin_lock);
	if (real_ssl_setup == NULL && pin_find_real() < 0) {
		pthread_mutex_unlock(&pin_lock);
		return MBEDTLS_ERR_SSL_BAD_INPUT_DATA;
	}
	if (pin_active) {
		pin_conf((mbedtls_ssl_config *)(uintptr_t)conf);
		pin_setups++;
	}
	pthread_mutex_unlock(&pin_lock);
	return real_ssl_setup(ssl, conf);
}

static unsigned long pin_count(void)
{
	pthread_mutex_lock(&pin_lock);
	unsigned long n = pin_setups;
	pthread_mutex_unlock(&pin_lock);
	return n;
}
#endif /* CONDUIT_BENCH_NNG */

static const char *mbed_err(int r)
{
	static char buf[160];
	mbedtls_strerror(r, buf, sizeof(buf));
	return buf;
}

/* Raw mbedTLS's state in each process: its own random generator, the
 * certificate parsed once, one configuration per role. */
static struct {
	bool ready; /* initialised */
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_x509_crt crt;
	mbedtls_pk_context key;
	mbedtls_ssl_config cli, srv;
	/* Resumption, as conduit's server does it: tickets (AES-256-GCM)
	 * and a session cache; a client offers sess when offer is set. */
	mbedtls_ssl_ticket_context ticket;
	mbedtls_ssl_cache_context cache;
	mbedtls_ssl_session sess;
	bool offer;
} RT;

static int rt_rng_init(void)
{
	mbedtls_entropy_init(&RT.entropy);
	mbedtls_ctr_drbg_init(&RT.drbg);
	mbedtls_x509_crt_init(&RT.crt);
	mbedtls_pk_init(&RT.key);
	mbedtls_ssl_config_init(&RT.cli);
	mbedtls_ssl_config_init(&RT.srv);
	mbedtls_ssl_ticket_init(&RT.ticket);
	mbedtls_ssl_cache_init(&RT.cache);
	mbedtls_ssl_session_init(&RT.sess);
	RT.ready = true; /* initialised: rt_free() may run */
	static const unsigned char pers[] = "conduit-bench";
	int r = mbedtls_ctr_drbg_seed(&RT.drbg, mbedtls_entropy_func,
	                              &RT.entropy, pers, sizeof(pers) - 1);
	if (r != 0)
		return set_err("random generator: %s", mbed_err(r));
	return 0;
}

/* The server's identity: an EC P-256 key and a self-signed certificate
 * for TLS_NAME, made here so that no file or tool is needed. */
static int tls_make_cert(void)
{
	static const struct tool_cert self = {.subject = "CN=" TLS_NAME,
	                                      .issuer = "CN=" TLS_NAME,
	                                      .serial = 1,
	                                      .ca = true};
	mbedtls_pk_context key;
	mbedtls_pk_init(&key);
	int r = tool_key_new(&key, &RT.drbg);
	if (r == 0)
		r = tool_cert_pem(G.cert_pem, sizeof(G.cert_pem), &key, &key,
		                  &self, &RT.drbg);
	if (r == 0)
		r = mbedtls_pk_write_key_pem(&key, (unsigned char *)G.key_pem,
		                             sizeof(G.key_pem));
	mbedtls_pk_free(&key);
	if (r != 0)
		return set_err("making the test certificate: %s", mbed_err(r));
	return 0;
}

/* Raw mbedTLS's two configurations, made the way conduit's are: the
 * certificate parsed from the same PEM, a client that verifies the chain
 * and the name, the pinned suite. */
static int rt_setup(void)
{
	int r = mbedtls_x509_crt_parse(
	    &RT.crt, (const unsigned char *)G.cert_pem, strlen(G.cert_pem) + 1);
	if (r == 0)
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
		r = mbedtls_pk_parse_key(&RT.key,
		                         (const unsigned char *)G.key_pem,
		                         strlen(G.key_pem) + 1, NULL, 0,
		                         mbedtls_ctr_drbg_random, &RT.drbg);
#else
		r = mbedtls_pk_parse_key(&RT.key,
		                         (const unsigned char *)G.key_pem,
		                         strlen(G.key_pem) + 1, NULL, 0);
#endif
	mbedtls_ssl_config *cf[2] = {&RT.cli, &RT.srv};
	for (int i = 0; i < 2 && r == 0; i++) {
		r = mbedtls_ssl_config_defaults(
		    cf[i], i ? MBEDTLS_SSL_IS_SERVER : MBEDTLS_SSL_IS_CLIENT,
		    MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
		if (r != 0)
			break;
		mbedtls_ssl_conf_rng(cf[i], mbedtls_ctr_drbg_random, &RT.drbg);
		pin_conf(cf[i]);
	}
	if (r == 0) {
		mbedtls_ssl_conf_authmode(&RT.cli, MBEDTLS_SSL_VERIFY_REQUIRED);
		mbedtls_ssl_conf_ca_chain(&RT.cli, &RT.crt, NULL);
		mbedtls_ssl_conf_authmode(&RT.srv, MBEDTLS_SSL_VERIFY_NONE);
		r = mbedtls_ssl_conf_own_cert(&RT.srv, &RT.crt, &RT.key);
	}
	if (r == 0)
		r = mbedtls_ssl_ticket_setup(&RT.ticket,
		                             mbedtls_ctr_drbg_random, &RT.drbg,
		                             MBEDTLS_CIPHER_AES_256_GCM, 7200);
	if (r == 0) {
		mbedtls_ssl_conf_session_tickets_cb(
		    &RT.srv, mbedtls_ssl_ticket_write, mbedtls_ssl_ticket_parse,
		    &RT.ticket);
		mbedtls_ssl_conf_session_cache(&RT.srv, &RT.cache,
		                               mbedtls_ssl_cache_get,
		                               mbedtls_ssl_cache_set);
	}
	if (r != 0)
		return set_err("raw mbedTLS configuration: %s", mbed_err(r));
	return 0;
}

static void rt_free(void)
{
	mbedtls_ssl_config_free(&RT.cli);
	mbedtls_ssl_config_free(&RT.srv);
	mbedtls_x509_crt_free(&RT.crt);
	mbedtls_pk_free(&RT.key);
	mbedtls_ssl_ticket_free(&RT.ticket);
	mbedtls_ssl_cache_free(&RT.cache);
	mbedtls_ssl_session_free(&RT.sess);
	mbedtls_ctr_drbg_free(&RT.drbg);
	mbedtls_entropy_free(&RT.entropy);
	RT.ready = false;
}

/* One raw TLS connection: mbedtls_ssl_* over a non-blocking socket, poll
 * when mbedTLS wants the socket. */
struct rtls {
	mbedtls_ssl_context ssl;
	int fd;
	bool resumed; /* a client's offered session was resumed */
};

static int rt_send(void *ctx, const unsigned char *buf, size_t len)
{
	int fd = *(const int *)ctx;
	if (len > INT_MAX)
		len = INT_MAX;
	ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
	if (n >= 0)
		return (int)n;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return MBEDTLS_ERR_SSL_WANT_WRITE;
	return MBEDTLS_ERR_NET_SEND_FAILED;
}

static int rt_recv(void *ctx, unsigned char *buf, size_t len)
{
	int fd = *(const int *)ctx;
	if (len > INT_MAX)
		len = INT_MAX;
	ssize_t n = recv(fd, buf, len, 0);
	if (n >= 0)
		return (int)n;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return MBEDTLS_ERR_SSL_WANT_READ;
	return MBEDTLS_ERR_NET_RECV_FAILED;
}

static int raw_wait(int fd, short events);

/* mbedTLS wants the socket: wait for what it wants.  0, or -1 with the
 * error of r when r is no want. */
static int rt_want(struct rtls *t, int r, const char *what)
{
	if (r == MBEDTLS_ERR_SSL_WANT_READ)
		return raw_wait(t->fd, POLLIN);
	if (r == MBEDTLS_ERR_SSL_WANT_WRITE)
		return raw_wait(t->fd, POLLOUT);
	return set_err("mbedtls %s: %s", what, mbed_err(r));
}

/* Wrap a connected socket (taken over, closed on failure) and handshake. */
static int rt_open(struct rtls **out, int fd, bool server)
{
	struct rtls *t = calloc(1, sizeof(*t));
	if (t == NULL) {
		close(fd);
		return set_err("out of memory");
	}
	t->fd = fd;
	mbedtls_ssl_init(&t->ssl);
	int r = mbedtls_ssl_setup(&t->ssl, server ? &RT.srv : &RT.cli);
	if (r == 0 && !server)
		r = mbedtls_ssl_set_hostname(&t->ssl, TLS_NAME);
	if (r == 0 && !server && RT.offer)
		r = mbedtls_ssl_set_session(&t->ssl, &RT.sess);
	if (r != 0) {
		set_err("mbedtls setup: %s", mbed_err(r));
		goto fail;
	}
	mbedtls_ssl_set_bio(&t->ssl, &t->fd, rt_send, rt_recv, NULL);
	for (int pass = 0; pass < 10000; pass++) {
		r = mbedtls_ssl_handshake(&t->ssl);
		if (r == 0) {
			/* Resumed: the session kept the offered master
			 * secret (a full handshake makes a new one). */
			const mbedtls_ssl_session *now =
			    t->ssl.RT_PRIV(session);
			t->resumed =
			    !server && RT.offer && now != NULL &&
			    memcmp(now->RT_PRIV(master),
			           RT.sess.RT_PRIV(master),
			           sizeof(RT.sess.RT_PRIV(master))) == 0;
			*out = t;
			return 0;
		}
		if (rt_want(t, r, "handshake") < 0)
			goto fail;
	}
	set_err("mbedtls handshake: no progress");
fail:
	mbedtls_ssl_free(&t->ssl);
	close(t->fd);
	free(t);
	return -1;
}

static int rt_write_all(struct rtls *t, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	size_t done = 0;
	/* Each pass moves at least one byte or waits (bounded). */
	for (size_t pass = 0; done < len; pass++) {
		if (pass > len + 1000)
			return set_err("mbedtls write: no progress");
		int r = mbedtls_ssl_write(&t->ssl, p + done, len - done);
		if (r >= 0)
			done += (size_t)r;
		else if (rt_want(t, r, "write") < 0)
			return -1;
	}
	return 0;
}

/* 1 with *got bytes, 0 at the peer's close_notify, -1 on error. */
static int rt_read(struct rtls *t, void *buf, size_t cap, size_t *got)
{
	for (int pass = 0; pass < 1000; pass++) {
		int r = mbedtls_ssl_read(&t->ssl, buf, cap);
		if (r > 0) {
			*got = (size_t)r;
			return 1;
		}
		if (r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
			return 0;
		if (r == 0)
			return set_err("mbedtls read: the peer closed without "
			               "a close_notify");
		if (rt_want(t, r, "read") < 0)
			return -1;
	}
	return set_err("mbedtls read: no progress");
}

/* close_notify (as conduit's close sends it), then the socket. */
static void rt_close(struct rtls *t)
{
	for (int pass = 0; pass < 100; pass++) {
		int r = mbedtls_ssl_close_notify(&t->ssl);
		if (r != MBEDTLS_ERR_SSL_WANT_WRITE ||
		    raw_wait(t->fd, POLLOUT) < 0)
			break;
	}
	close(t->fd);
	mbedtls_ssl_free(&t->ssl);
	free(t);
}
#endif /* CONDUIT_HAVE_TLS */

/* ------------------------------------------------------------------ */
/* nng: pair1 sockets, one per connection on the client side           */

#ifdef CONDUIT_BENCH_NNG
static int nng_fail(const char *what, int rv)
{
	return set_err("%s: %s", what, nng_strerror(rv));
}

/* One TLS configuration per role in each process, made on first use,
 * like conduit's per-context cache and raw mbedTLS's RT.  The version is
 * pinned with the suite (pin_setup): nng 1.5.2's own
 * nng_tls_config_version(TLS 1.2, TLS 1.2) makes every handshake fail. */
/* Unused in a build without TLS, which measures no tls+tcp figure. */
__attribute__((unused)) static int nng_tls_cfg(nng_tls_config **out,
                                               bool server)
{
	static nng_tls_config *cfg[2];
	int i = server ? 1 : 0;
	if (cfg[i] == NULL) {
		nng_tls_config *c = NULL;
		int rv = nng_tls_config_alloc(&c, server ? NNG_TLS_MODE_SERVER
		                                         : NNG_TLS_MODE_CLIENT);
		if (rv != 0)
			return nng_fail("nng_tls_config_alloc", rv);
		if (server)
			rv = nng_tls_config_own_cert(c, G.cert_pem, G.key_pem,
			                             NULL);
		else if ((rv = nng_tls_config_ca_chain(c, G.cert_pem, NULL)) ==
		             0 &&
		         (rv = nng_tls_config_server_name(c, TLS_NAME)) == 0)
			rv = nng_tls_config_auth_mode(
			    c, NNG_TLS_AUTH_MODE_REQUIRED);
		if (rv != 0) {
			nng_tls_config_free(c);
			return nng_fail("nng TLS configuration", rv);
		}
		cfg[i] = c;
	}
	*out = cfg[i];
	return 0;
}

/*
 * nng_close() drops what is still queued to send, and nng has no linger,
 * so a server that closed right after its last message (the receiver's
 * ack, the last echo) could lose it.  A server therefore waits, before it
 * closes, until its clients have gone: their pipes are counted here.
 */
static pthread_mutex_t pipes_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pipes_cond = PTHREAD_COND_INITIALIZER;
static unsigned pipes_added, pipes_removed;

static void nng_pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	(void)p;
	(void)arg;
	pthread_mutex_lock(&pipes_lock);
	if (ev == NNG_PIPE_EV_ADD_POST)
		pipes_added++;
	else if (ev == NNG_PIPE_EV_REM_POST)
		pipes_removed++;
	pthread_cond_broadcast(&pipes_cond);
	pthread_mutex_unlock(&pipes_lock);
}

/* Wait until at least want clients have come and every one has gone. */
static int nng_wait_gone(unsigned want)
{
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += IO_TIMEOUT_MS / 1000;
	int r = 0;
	pthread_mutex_lock(&pipes_lock);
	/* Each pass is woken by an event or ends at the deadline. */
	for (int pass = 0; pass < 1000000 && r == 0; pass++) {
		if (pipes_added >= want && pipes_removed >= pipes_added)
			break;
		if (pthread_cond_timedwait(&pipes_cond, &pipes_lock, &dl) ==
		    ETIMEDOUT)
			r = set_err("nng: the client did not close within "
			            "%d ms",
			            IO_TIMEOUT_MS);
	}
	pthread_mutex_unlock(&pipes_lock);
	return r;
}

/* A pair1 socket whose waits are bounded like every other here. */
static int nng_sock(nng_socket *s, bool poly)
{
	int rv = poly ? nng_pair1_open_poly(s) : nng_pair1_open(s);
	if (rv != 0)
		return nng_fail("nng_pair1_open", rv);
	if ((rv = nng_socket_set_ms(*s, NNG_OPT_RECVTIMEO, IO_TIMEOUT_MS)) !=
	        0 ||
	    (rv = nng_socket_set_ms(*s, NNG_OPT_SENDTIMEO, IO_TIMEOUT_MS)) !=
	        0) {
		nng_close(*s);
		return nng_fail("nng socket options", rv);
	}
	return 0;
}

static int nng_dial_uri(nng_socket *s, enum transport tr, const char *uri)
{
	if (nng_sock(s, false) < 0)
		return -1;
	if (tr != T_TLS) {
		int rv = nng_dial(*s, uri, NULL, 0);
		if (rv == 0)
			return 0;
		nng_close(*s);
		return nng_fail(uri, rv);
	}
#ifdef CONDUIT_HAVE_TLS
	nng_dialer d;
	nng_tls_config *cfg = NULL;
	unsigned long before = pin_count();
	if (nng_tls_cfg(&cfg, false) < 0) {
		nng_close(*s);
		return -1;
	}
	int rv = nng_dialer_create(&d, *s, uri);
	if (rv == 0)
		rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg);
	if (rv == 0)
		rv = nng_dialer_start(d, 0);
	if (rv != 0) {
		nng_close(*s);
		return nng_fail(uri, rv);
	}
	if (pin_count() == before) {
		nng_close(*s);
		return set_err("nng's TLS connection did not go through the "
		               "suite pinning; its suite is unknown");
	}
	return 0;
#else
	nng_close(*s);
	return set_err("%s: TLS is not built in", uri);
#endif
}

static int nng_write(nng_socket s, const void *buf, size_t len)
{
	/* One message per write: nng copies the bytes into it. */
	int rv = nng_send(s, (void *)(uintptr_t)buf, len, 0);
	if (rv != 0)
		return nng_fail("nng_send", rv);
	return 0;
}

static int nng_read(nng_socket s, void *buf, size_t cap, size_t *got)
{
	size_t sz = cap;
	int rv = nng_recv(s, buf, &sz, 0);
	if (rv != 0)
		return nng_fail("nng_recv", rv);
	if (sz > cap)
		return set_err("nng_recv: a message of %zu bytes, more than "
		               "the %zu expected",
		               sz, cap);
	if (sz == 0)
		return set_err("nng_recv: an empty message");
	*got = sz;
	return 1;
}
#endif /* CONDUIT_BENCH_NNG */

/* ------------------------------------------------------------------ */
/* Raw sockets: non-blocking, poll(2) when they would block, the same   */
/* flags and options conduit uses, so the comparison is like for like.  */

static int raw_wait(int fd, short events)
{
	struct pollfd p = {.fd = fd, .events = events};
	for (int tries = 0; tries < 1000; tries++) {
		int r = poll(&p, 1, IO_TIMEOUT_MS);
		/* Ready, hung up or failed: the call that follows says. */
		if (r > 0)
			return 0;
		if (r == 0)
			return set_err("timed out after %d ms", IO_TIMEOUT_MS);
		if (errno != EINTR)
			return set_err("poll: %s", strerror(errno));
	}
	return set_err("poll: interrupted too often");
}
static int set_nodelay(int fd)
{
	int one = 1;
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		return set_err("TCP_NODELAY: %s", strerror(errno));
	return 0;
}

static int raw_write_all(int fd, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	size_t done = 0;
	/* Each pass either moves at least one byte or waits (bounded). */
	for (size_t pass = 0; done < len; pass++) {
		if (pass > len + 1000)
			return set_err("send: no progress");
		ssize_t n = send(fd, p + done, len - done, MSG_NOSIGNAL);
		if (n >= 0) {
			done += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return set_err("send: %s", strerror(errno));
		if (raw_wait(fd, POLLOUT) < 0)
			return -1;
	}
	return 0;
}

/* 1 with *got bytes, 0 at end of stream, -1 on error. */
static int raw_read(int fd, void *buf, size_t cap, size_t *got)
{
	for (int pass = 0; pass < 1000; pass++) {
		ssize_t n = recv(fd, buf, cap, 0);
		if (n > 0) {
			*got = (size_t)n;
			return 1;
		}
		if (n == 0)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return set_err("recv: %s", strerror(errno));
		if (raw_wait(fd, POLLIN) < 0)
			return -1;
	}
	return set_err("recv: no progress");
}

/* ------------------------------------------------------------------ */
/* Links: one connection, any variant.  The switch costs every variant  */
/* the same predictable branch.                                         */

struct link {
	enum api api;
	int fd;
	conduit_flow *flow;
#ifdef CONDUIT_HAVE_TLS
	struct rtls *rt; /* raw mbedTLS, on fd */
#endif
#ifdef CONDUIT_BENCH_NNG
	nng_socket ns;
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
	nng_socket ns;
	bool ns_open;
#endif
	char uri[URI_MAX];
	int port;
};

static int link_write_all(struct link *k, const void *buf, size_t len)
{
	if (k->api == API_CONDUIT) {
		size_t n = 0;
		int rc =
		    conduit_write_all(k->flow, buf, len, &n, IO_TIMEOUT_MS);
		if (rc != CONDUIT_OK)
			return set_err("conduit_write_all: %s",
			               cerr(conduit_flow_error(k->flow), rc));
		return 0;
	}
#ifdef CONDUIT_BENCH_NNG
	if (k->api == API_NNG)
		return nng_write(k->ns, buf, len);
#endif
#ifdef CONDUIT_HAVE_TLS
	if (k->rt != NULL)
		return rt_write_all(k->rt, buf, len);
#endif
	return raw_write_all(k->fd, buf, len);
}

/* 1 with *got bytes, 0 at end of stream, -1 on error. */
static int link_read(struct link *k, void *buf, size_t cap, size_t *got)
{
	if (k->api == API_CONDUIT) {
		int rc =
		    conduit_read_wait(k->flow, buf, cap, got, IO_TIMEOUT_MS);
		if (rc == CONDUIT_OK)
			return 1;
		if (rc == CONDUIT_EOF)
			return 0;
		return set_err("conduit_read_wait: %s",
		               cerr(conduit_flow_error(k->flow), rc));
	}
#ifdef CONDUIT_BENCH_NNG
	if (k->api == API_NNG)
		return nng_read(k->ns, buf, cap, got);
#endif
#ifdef CONDUIT_HAVE_TLS
	if (k->rt != NULL)
		return rt_read(k->rt, buf, cap, got);
#endif
	return raw_read(k->fd, buf, cap, got);
}

static void link_close(struct link *k)
{
	if (k->api == API_CONDUIT) {
		if (k->flow == NULL)
			return;
		/* Sockets have nothing left to send; TLS may have its
		 * close_notify to flush. */
		int rc = conduit_close(k->flow);
		if (rc == CONDUIT_WANT_READ || rc == CONDUIT_WANT_WRITE)
			conduit_close_wait(k->flow, IO_TIMEOUT_MS);
		conduit_flow_free(k->flow);
		k->flow = NULL;
		return;
	}
#ifdef CONDUIT_BENCH_NNG
	if (k->api == API_NNG) {
		if (k->ns_own)
			nng_close(k->ns);
		k->ns_own = false;
		return;
	}
#endif
#ifdef CONDUIT_HAVE_TLS
	if (k->rt != NULL) {
		rt_close(k->rt);
		k->rt = NULL;
		k->fd = -1;
	}
#endif
	if (k->fd >= 0) {
		close(k->fd);
		k->fd = -1;
	}
}

static void link_init(struct link *k, enum api api)
{
	memset(k, 0, sizeof(*k));
	k->api = api;
	k->fd = -1;
}

static int raw_connect(const struct target *t, int *out)
{
	/* A full unix listen queue says EAGAIN; conduit retries then too. */
	for (int attempt = 0; attempt < 1000; attempt++) {
		int fd = socket(t->sa.ss_family,
		                SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			return set_err("socket: %s", strerror(errno));
		if (t->tr != T_UNIX && set_nodelay(fd) < 0) {
			close(fd);
			return -1;
		}
		const struct sockaddr *sa = (const struct sockaddr *)&t->sa;
		if (connect(fd, sa, t->salen) == 0) {
			*out = fd;
			return 0;
		}
		int e = errno;
		if (e == EINPROGRESS || e == EINTR) {
			if (raw_wait(fd, POLLOUT) < 0) {
				close(fd);
				return -1;
			}
			int soerr = 0;
			socklen_t sl = sizeof(soerr);
			int g =
			    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
			if (g < 0)
				soerr = errno;
			if (soerr == 0) {
				*out = fd;
				return 0;
			}
			e = soerr;
		}
		close(fd);
		if (e != EAGAIN)
			return set_err("connect: %s", strerror(e));
		struct timespec nap = {0, 1000 * 1000};
		nanosleep(&nap, NULL);
	}
	return set_err("connect: listen queue stayed full");
}

#ifdef CONDUIT_HAVE_TLS
/* Every TLS connection must have negotiated the pinned suite. */
static int check_suite(const char *name)
{
	if (name != NULL && strcmp(name, pin_suite_name()) == 0)
		return 0;
	return set_err("TLS negotiated %s, not the pinned %s",
	               name != NULL ? name : "no suite", pin_suite_name());
}
#endif

static int link_connect(struct link *k, enum api api, const struct target *t)
{
	link_init(k, api);
	if (api == API_CONDUIT) {
		/* What an application writes: a URI, parsed every time. */
		int rc = conduit_connect_wait(&k->flow, G.ctx, t->uri,
		                              IO_TIMEOUT_MS);
		if (rc != CONDUIT_OK)
			return set_err("conduit_connect_wait %s: %s", t->uri,
			               cerr(conduit_ctx_error(G.ctx), rc));
#ifdef CONDUIT_HAVE_TLS
		if (t->tr == T_TLS &&
		    check_suite(conduit_tls_cipher(k->flow)) < 0) {
			link_close(k);
			return -1;
		}
#endif
		return 0;
	}
#ifdef CONDUIT_BENCH_NNG
	if (api == API_NNG) {
		if (nng_dial_uri(&k->ns, t->tr, t->uri) < 0)
			return -1;
		k->ns_own = true;
		return 0;
	}
#endif
	if (raw_connect(t, &k->fd) < 0)
		return -1;
#ifdef CONDUIT_HAVE_TLS
	if (t->tr == T_TLS && rt_open(&k->rt, k->fd, false) < 0) {
		k->fd = -1; /* rt_open closed it */
		return -1;
	}
	if (t->tr == T_TLS &&
	    check_suite(mbedtls_ssl_get_ciphersuite(&k->rt->ssl)) < 0) {
		link_close(k);
		return -1;
	}
#endif
	return 0;
}

#ifdef CONDUIT_BENCH_NNG
static int nng_lsn_open(struct listener *L, enum transport tr, bool poly)
{
	char uri[URI_MAX];
	if (tr == T_UNIX) {
		int n = snprintf(uri, sizeof(uri), "ipc://%s", G.sock);
		if (n < 0 || (size_t)n >= sizeof(uri))
			return set_err("ipc://%s: path too long", G.sock);
		unlink(G.sock); /* a leftover of an earlier run */
	} else {
		snprintf(uri, sizeof(uri), "%s://127.0.0.1:0",
		         tr == T_TLS ? "tls+tcp" : "tcp");
	}
	if (nng_sock(&L->ns, poly) < 0)
		return -1;
	L->ns_open = true;
	nng_listener nl;
	int rv =
	    nng_pipe_notify(L->ns, NNG_PIPE_EV_ADD_POST, nng_pipe_event, NULL);
	if (rv == 0)
		rv = nng_pipe_notify(L->ns, NNG_PIPE_EV_REM_POST,
		                     nng_pipe_event, NULL);
	if (rv == 0)
		rv = nng_listener_create(&nl, L->ns, uri);
#ifdef CONDUIT_HAVE_TLS
	if (rv == 0 && tr == T_TLS) {
		nng_tls_config *cfg = NULL;
		if (nng_tls_cfg(&cfg, true) < 0)
			return -1;
		rv = nng_listener_set_ptr(nl, NNG_OPT_TLS_CONFIG, cfg);
	}
#endif
	if (rv == 0)
		rv = nng_listener_start(nl, 0);
	if (rv != 0)
		return nng_fail(uri, rv);
	if (tr == T_UNIX) {
		snprintf(L->uri, sizeof(L->uri), "%s", uri);
		return 0;
	}
	nng_sockaddr sa;
	rv = nng_listener_get_addr(nl, NNG_OPT_LOCADDR, &sa);
	if (rv != 0)
		return nng_fail("nng listener address", rv);
	L->port = ntohs(sa.s_in.sa_port);
	snprintf(L->uri, sizeof(L->uri), "%s://127.0.0.1:%d",
	         tr == T_TLS ? "tls+tcp" : "tcp", L->port);
	return 0;
}
#endif

/* poly: an nng server that answers many clients (the connection figure). */
static int lsn_open(struct listener *L, enum api api, enum transport tr,
                    conduit_ctx *ctx, bool poly)
{
	memset(L, 0, sizeof(*L));
	L->api = api;
	L->tr = tr;
	L->fd = -1;
	L->port = -1;
	L->ctx = ctx;
	if (api == API_CONDUIT) {
		const char *uri = tr == T_UNIX  ? G.unix_uri
		                  : tr == T_TLS ? "tls+tcp://127.0.0.1:0"
		                                : "tcp://127.0.0.1:0";
		int rc = conduit_listen(&L->l, ctx, uri);
		if (rc != CONDUIT_OK)
			return set_err("conduit_listen %s: %s", uri,
			               cerr(conduit_ctx_error(ctx), rc));
		/* The real port is in the listener's URI; a TLS client
		 * checks the certificate's name. */
		snprintf(L->uri, sizeof(L->uri), "%s%s",
		         conduit_listener_uri(L->l),
		         tr == T_TLS ? "?servername=" TLS_NAME : "");
		return 0;
	}
	if (api == API_NNG) {
#ifdef CONDUIT_BENCH_NNG
		return nng_lsn_open(L, tr, poly);
#else
		return set_err("nng is not built in");
#endif
	}
	(void)poly;
	int fd = socket(tr == T_UNIX ? AF_UNIX : AF_INET,
	                SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return set_err("socket: %s", strerror(errno));
	if (tr == T_UNIX) {
		struct sockaddr_un un;
		memset(&un, 0, sizeof(un));
		un.sun_family = AF_UNIX;
		memcpy(un.sun_path, G.sock, strlen(G.sock) + 1);
		unlink(G.sock); /* a leftover of an earlier run */
		if (bind(fd, (struct sockaddr *)&un, sizeof(un)) < 0 ||
		    listen(fd, SOMAXCONN) < 0) {
			set_err("listen %s: %s", G.sock, strerror(errno));
			close(fd);
			return -1;
		}
		snprintf(L->uri, sizeof(L->uri), "%s", G.unix_uri);
	} else {
		struct sockaddr_in in;
		socklen_t sl = sizeof(in);
		int one = 1;
		memset(&in, 0, sizeof(in));
		in.sin_family = AF_INET;
		in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
		               sizeof(one)) < 0 ||
		    bind(fd, (struct sockaddr *)&in, sizeof(in)) < 0 ||
		    listen(fd, SOMAXCONN) < 0 ||
		    getsockname(fd, (struct sockaddr *)&in, &sl) < 0) {
			set_err("listen 127.0.0.1: %s", strerror(errno));
			close(fd);
			return -1;
		}
		L->port = ntohs(in.sin_port);
		snprintf(L->uri, sizeof(L->uri), "tcp://127.0.0.1:%d", L->port);
	}
	L->fd = fd;
	return 0;
}

#ifdef CONDUIT_HAVE_TLS
/* A server finishes the TLS handshake before it counts a connection as
 * accepted, as raw mbedTLS does in rt_open. */
static int flow_handshake_wait(conduit_flow *f, conduit_ctx *ctx)
{
	for (int pass = 0; pass < 10000; pass++) {
		int rc = conduit_handshake(f);
		if (rc == CONDUIT_OK)
			return 0;
		if (rc != CONDUIT_WANT_READ && rc != CONDUIT_WANT_WRITE)
			return set_err("conduit_handshake: %s",
			               cerr(conduit_flow_error(f), rc));
		struct conduit_pollitem it = {.flow = f,
		                              .events = CONDUIT_POLLOUT};
		size_t nr = 0;
		rc = conduit_poll(ctx, &it, 1, IO_TIMEOUT_MS, &nr);
		if (rc != CONDUIT_OK)
			return set_err("conduit_poll: %s",
			               cerr(conduit_ctx_error(ctx), rc));
		if (nr == 0)
			return set_err("handshake: timed out after %d ms",
			               IO_TIMEOUT_MS);
	}
	return set_err("handshake: no progress");
}
#endif

static int lsn_accept(struct listener *L, struct link *k)
{
	link_init(k, L->api);
	if (L->api == API_CONDUIT) {
		int rc = conduit_accept_wait(&k->flow, L->l, IO_TIMEOUT_MS);
		if (rc != CONDUIT_OK)
			return set_err("conduit_accept_wait: %s",
			               cerr(conduit_listener_error(L->l), rc));
#ifdef CONDUIT_HAVE_TLS
		if (L->tr == T_TLS &&
		    flow_handshake_wait(k->flow, L->ctx) < 0) {
			link_close(k);
			return -1;
		}
#endif
		return 0;
	}
#ifdef CONDUIT_BENCH_NNG
	if (L->api == API_NNG) {
		/* nng accepts by itself; the socket is the connection. */
		k->ns = L->ns;
		return 0;
	}
#endif
	for (int pass = 0; pass < 1000; pass++) {
		/* The peer's address is asked for, as conduit does. */
		struct sockaddr_storage peer;
		socklen_t pl = sizeof(peer);
		int fd = accept4(L->fd, (struct sockaddr *)&peer, &pl,
		                 SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd >= 0) {
			if (L->tr != T_UNIX && set_nodelay(fd) < 0) {
				close(fd);
				return -1;
			}
			k->fd = fd;
#ifdef CONDUIT_HAVE_TLS
			if (L->tr == T_TLS && rt_open(&k->rt, fd, true) < 0) {
				k->fd = -1;
				return -1;
			}
#endif
			return 0;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return set_err("accept: %s", strerror(errno));
		if (raw_wait(L->fd, POLLIN) < 0)
			return -1;
	}
	return set_err("accept: no progress");
}

static void lsn_close(struct listener *L)
{
	if (L->api == API_CONDUIT) {
		conduit_listener_free(L->l); /* removes its socket file */
		L->l = NULL;
		return;
	}
#ifdef CONDUIT_BENCH_NNG
	if (L->api == API_NNG) {
		if (L->ns_open)
			nng_close(L->ns);
		L->ns_open = false;
	}
#endif
	if (L->fd >= 0)
		close(L->fd);
	L->fd = -1;
	if (L->tr == T_UNIX)
		unlink(G.sock);
}

/* ------------------------------------------------------------------ */
/* Children: the server side of every figure.  A child listens, tells   */
/* the parent where (READY), serves, and reports what it saw (DONE) or  */
/* what broke (ERROR) through a pipe.                                   */

enum role { ROLE_SINK, ROLE_ECHO, ROLE_ACCEPT };
enum { MSG_READY = 1, MSG_DONE, MSG_ERROR };

struct job {
	enum role role;
	enum api api;
	enum transport tr;
	uint64_t amount; /* bytes to receive or echo, or connections */
};

/* Smaller than PIPE_BUF, so each report is written in one piece. */
struct report {
	int32_t kind;
	int32_t port;
	uint64_t count;     /* bytes received or echoed, connections accepted */
	uint64_t bad_at;    /* first wrong byte, UINT64_MAX if none */
	char text[URI_MAX]; /* listener URI or error */
};

static int send_report(int fd, const struct report *r)
{
	ssize_t n;
	do
		n = write(fd, r, sizeof(*r));
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)sizeof(*r) ? 0 : -1;
}

static int serve_sink(struct listener *L, const struct job *job,
                      struct report *rep)
{
	struct link k;
	if (lsn_accept(L, &k) < 0)
		return -1;
	unsigned char *buf = malloc(RBUF_SIZE);
	if (buf == NULL) {
		link_close(&k);
		return set_err("out of memory");
	}
	uint64_t off = 0, bad = UINT64_MAX;
	int r = 0;
	size_t n = 0;
	/* Every read brings at least one byte: amount + 1 passes at most. */
	for (uint64_t pass = 0; off < job->amount && r == 0; pass++) {
		int g = link_read(&k, buf, RBUF_SIZE, &n);
		if (g < 0)
			r = -1;
		else if (pass > job->amount)
			r = set_err("more reads than bytes");
		else if (g == 0)
			r = set_err("end of stream after %" PRIu64
			            " of %" PRIu64 " bytes",
			            off, job->amount);
		else if (n > job->amount - off)
			r = set_err("more bytes than were sent");
		else {
			/* The same check on both variants; after the first
			 * wrong byte only counting goes on. */
			if (bad == UINT64_MAX)
				bad = tool_pat_check(buf, n, off);
			off += n;
		}
	}
	if (r == 0) {
		unsigned char ack = 'k';
		r = link_write_all(&k, &ack, 1);
	}
	/* A stream then ends; nng's messages have no end to wait for. */
	if (r == 0 && k.api != API_NNG) {
		int g = link_read(&k, buf, RBUF_SIZE, &n);
		if (g > 0)
			r = set_err("bytes after the end of the stream");
		else if (g < 0)
			r = -1;
	}
	rep->count = off;
	rep->bad_at = bad;
	link_close(&k);
	free(buf);
	return r;
}

static int serve_echo(struct listener *L, const struct job *job,
                      struct report *rep)
{
	struct link k;
	if (lsn_accept(L, &k) < 0)
		return -1;
	unsigned char buf[PING_SIZE];
	uint64_t echoed = 0;
	int r = -1;
	for (uint64_t pass = 0; pass <= job->amount; pass++) {
		/* A stream ends with the client's close; nng's messages
		 * stop when all have come back. */
		if (k.api == API_NNG && echoed == job->amount) {
			r = 0;
			break;
		}
		size_t n = 0;
		int g = link_read(&k, buf, sizeof(buf), &n);
		if (g < 0)
			break;
		if (g == 0) {
			r = 0;
			break;
		}
		if (link_write_all(&k, buf, n) < 0)
			break;
		echoed += n;
	}
	if (r < 0 && errmsg[0] == '\0')
		set_err("echo: more passes than bytes");
	rep->count = echoed;
	link_close(&k);
	return r;
}

static int serve_accept(struct listener *L, const struct job *job,
                        struct report *rep)
{
#ifdef CONDUIT_BENCH_NNG
	/* Each nng client sends one byte once connected; the answer goes
	 * back to the connection it came from (pair1 polyamorous). */
	if (L->api == API_NNG) {
		for (uint64_t i = 0; i < job->amount; i++) {
			nng_msg *m = NULL;
			int rv = nng_recvmsg(L->ns, &m, 0);
			if (rv != 0)
				return nng_fail("nng_recvmsg", rv);
			if (nng_msg_len(m) != 1) {
				nng_msg_free(m);
				return set_err("nng: a greeting of %zu bytes, "
				               "not 1",
				               nng_msg_len(m));
			}
			if ((rv = nng_sendmsg(L->ns, m, 0)) != 0) {
				nng_msg_free(m);
				return nng_fail("nng_sendmsg", rv);
			}
			rep->count++;
		}
		return 0;
	}
#endif
	for (uint64_t i = 0; i < job->amount; i++) {
		struct link k;
		if (lsn_accept(L, &k) < 0)
			return -1;
		link_close(&k);
		rep->count++;
	}
	return 0;
}

/* Not inlined, so that a profile of a child can start here:
 * valgrind --tool=callgrind --trace-children=yes --zero-before=child_main */
__attribute__((noinline)) static int child_main(const struct job *job, int wfd)
{
	struct report rep;
	memset(&rep, 0, sizeof(rep));
	rep.bad_at = UINT64_MAX;
	errmsg[0] = '\0';

	/* The parent's context is a copy here; this side has its own. */
	conduit_ctx_free(G.ctx);
	G.ctx = NULL;
	conduit_ctx *ctx = NULL;
	struct listener L;
	int r = -1;
#ifdef CONDUIT_HAVE_TLS
	int crc = CONDUIT_OK;
	/* Not the client's random numbers: its generator was copied. */
	if (RT.ready)
		mbedtls_ctr_drbg_reseed(&RT.drbg,
		                        (const unsigned char *)"server", 6);
#endif
	if (job->api == API_CONDUIT && conduit_ctx_new(&ctx) != CONDUIT_OK)
		set_err("conduit_ctx_new: out of memory");
#ifdef CONDUIT_HAVE_TLS
	else if (job->api == API_CONDUIT && job->tr == T_TLS &&
	         (crc = conduit_tls_set_cert_pem(
	              ctx, G.cert_pem, strlen(G.cert_pem), G.key_pem,
	              strlen(G.key_pem), NULL)) != CONDUIT_OK)
		set_err("conduit_tls_set_cert_pem: %s",
		        cerr(conduit_ctx_error(ctx), crc));
#endif
	else if (lsn_open(&L, job->api, job->tr, ctx,
	                  job->role == ROLE_ACCEPT) == 0) {
		rep.kind = MSG_READY;
		rep.port = L.port;
		snprintf(rep.text, sizeof(rep.text), "%s", L.uri);
		if (send_report(wfd, &rep) == 0) {
			if (job->role == ROLE_SINK)
				r = serve_sink(&L, job, &rep);
			else if (job->role == ROLE_ECHO)
				r = serve_echo(&L, job, &rep);
			else
				r = serve_accept(&L, job, &rep);
#ifdef CONDUIT_BENCH_NNG
			if (r == 0 && job->api == API_NNG)
				r = nng_wait_gone(job->role == ROLE_ACCEPT
				                      ? (unsigned)job->amount
				                      : 1);
#endif
		} else {
			set_err("report pipe: %s", strerror(errno));
		}
		lsn_close(&L);
	}
	rep.kind = r == 0 ? MSG_DONE : MSG_ERROR;
	if (r != 0)
		snprintf(rep.text, sizeof(rep.text), "%s", errmsg);
	send_report(wfd, &rep);
	close(wfd);
	conduit_ctx_free(ctx);
	return r == 0 ? 0 : 1;
}

struct peer {
	pid_t pid;
	int rfd;
};

static int peer_recv(struct peer *p, struct report *rep)
{
	struct pollfd pf = {.fd = p->rfd, .events = POLLIN};
	size_t have = 0;
	memset(rep, 0, sizeof(*rep));
	for (int pass = 0; have < sizeof(*rep) && pass < 1000; pass++) {
		int r = poll(&pf, 1, IO_TIMEOUT_MS);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return set_err("no word from the %s server",
			               r == 0 ? "silent" : "unreachable");
		ssize_t n =
		    read(p->rfd, (char *)rep + have, sizeof(*rep) - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return set_err("the server process ended unexpectedly");
		have += (size_t)n;
	}
	if (have < sizeof(*rep))
		return set_err("the server's report was cut short");
	rep->text[sizeof(rep->text) - 1] = '\0';
	if (rep->kind == MSG_ERROR)
		return set_err("server: %s", rep->text);
	return 0;
}

/* Something failed on this side: the server may know why (it failed
 * first and closed), so give it a moment to say so, then end it. */
static void peer_abort(struct peer *p)
{
	struct pollfd pf = {.fd = p->rfd, .events = POLLIN};
	struct report rep;
	if (p->rfd >= 0 && poll(&pf, 1, 200) > 0 &&
	    read(p->rfd, &rep, sizeof(rep)) == (ssize_t)sizeof(rep) &&
	    rep.kind == MSG_ERROR) {
		char mine[sizeof(errmsg)];
		rep.text[sizeof(rep.text) - 1] = '\0';
		snprintf(mine, sizeof(mine), "%s", errmsg);
		set_err("%.300s (server: %.200s)", mine, rep.text);
	}
	if (p->pid > 0) {
		int st = 0;
		if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
			/* It ended before we gave up on it: say how. */
			char mine[sizeof(errmsg)];
			snprintf(mine, sizeof(mine), "%s", errmsg);
			if (WIFSIGNALED(st))
				set_err("%.300s (the server was killed by "
				        "signal %d)",
				        mine, WTERMSIG(st));
			else if (WIFEXITED(st) && WEXITSTATUS(st) != 0)
				set_err(
				    "%.300s (the server exited with status %d)",
				    mine, WEXITSTATUS(st));
		} else {
			kill(p->pid, SIGKILL);
			waitpid(p->pid, NULL, 0);
		}
	}
	if (p->rfd >= 0)
		close(p->rfd);
	p->pid = -1;
	p->rfd = -1;
	child_pid = 0;
}

/* Fork a server for job; returns once it listens, with t telling where. */
static int peer_start(struct peer *p, const struct job *job, struct target *t)
{
	int pfd[2];
	p->pid = -1;
	p->rfd = -1;
	memset(t, 0, sizeof(*t));
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return set_err("pipe: %s", strerror(errno));
	pid_t parent = getpid();
	fflush(NULL); /* or the child's copy of stdout could print again */
	pid_t pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return set_err("fork: %s", strerror(errno));
	}
	if (pid == 0) {
		close(pfd[0]);
		child_setup(parent, G.cpu[1]);
		_exit(child_main(job, pfd[1]));
	}
	close(pfd[1]);
	p->pid = pid;
	p->rfd = pfd[0];
	child_pid = pid;

	struct report rep;
	if (peer_recv(p, &rep) < 0) {
		peer_abort(p);
		return -1;
	}
	if (rep.kind != MSG_READY) {
		peer_abort(p);
		return set_err("the server did not say where it listens");
	}
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

/* Collect the server's final report and reap it. */
static int peer_finish(struct peer *p, struct report *rep)
{
	if (peer_recv(p, rep) < 0) {
		peer_abort(p);
		return -1;
	}
	/* The child closes its end as it exits: wait for that, then reap. */
	struct pollfd pf = {.fd = p->rfd, .events = POLLIN};
	char c;
	for (int pass = 0; pass < 100; pass++) {
		int r = poll(&pf, 1, IO_TIMEOUT_MS);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || read(p->rfd, &c, 1) <= 0)
			break;
	}
	close(p->rfd);
	p->rfd = -1;
	int st = 0;
	pid_t w;
	do
		w = waitpid(p->pid, &st, 0);
	while (w < 0 && errno == EINTR);
	p->pid = -1;
	child_pid = 0;
	if (w < 0)
		return set_err("waitpid: %s", strerror(errno));
	if (WIFSIGNALED(st))
		return set_err("the server was killed by signal %d (%s)",
		               WTERMSIG(st), strsignal(WTERMSIG(st)));
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return set_err("the server exited with status %d",
		               WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	return 0;
}

/* ------------------------------------------------------------------ */
/* nng's client runs in a forked process (nng refuses to run in a       */
/* process that forks after it has started, and every run forks a       */
/* server).  Its results come back through shared memory.               */

enum run_kind { RUN_THROUGHPUT, RUN_LATENCY, RUN_CONNECT };

struct run_req {
	enum run_kind kind;
	enum transport tr;
	size_t ws;
	uint64_t total;
	unsigned warm, n;
};

struct shared_result {
	int32_t rc;
	double secs;
	char err[sizeof(errmsg)];
	uint64_t samples[]; /* round-trip times */
};

static struct shared_result *SH;
static size_t sh_size;
static unsigned sh_samples; /* room in SH->samples */
static bool in_client;      /* this is a forked nng client */

static int run_throughput(enum api api, enum transport tr, size_t ws,
                          uint64_t total, double *secs);
static int run_latency(enum api api, enum transport tr, unsigned warm,
                       unsigned n, uint64_t *samples);
static int run_connect(enum api api, enum transport tr, bool resume,
                       unsigned warm, unsigned n, double *secs);

static int shared_init(unsigned samples)
{
	sh_size = sizeof(*SH) + (size_t)samples * sizeof(SH->samples[0]);
	void *p = mmap(NULL, sh_size, PROT_READ | PROT_WRITE,
	               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return set_err("mmap: %s", strerror(errno));
	SH = p;
	sh_samples = samples;
	return 0;
}

static int run_forked(const struct run_req *q, double *secs, uint64_t *samples)
{
	if (SH == NULL || (q->kind == RUN_LATENCY && q->n > sh_samples))
		return set_err("no room for the nng client's results");
	memset(SH, 0, sizeof(*SH));
	SH->rc = -1;
	pid_t parent = getpid();
	fflush(NULL); /* or the child's copy of stdout could print again */
	pid_t pid = fork();
	if (pid < 0)
		return set_err("fork: %s", strerror(errno));
	if (pid == 0) {
		child_setup(parent, G.cpu[0]);
		in_client = true;
		errmsg[0] = '\0';
		int r;
		if (q->kind == RUN_THROUGHPUT)
			r = run_throughput(API_NNG, q->tr, q->ws, q->total,
			                   &SH->secs);
		else if (q->kind == RUN_LATENCY)
			r = run_latency(API_NNG, q->tr, q->warm, q->n,
			                SH->samples);
		else
			r = run_connect(API_NNG, q->tr, false, q->warm, q->n,
			                &SH->secs);
		snprintf(SH->err, sizeof(SH->err), "%s", errmsg);
		SH->rc = r;
		_exit(r == 0 ? 0 : 1);
	}
	child_pid = pid;
	int st = 0;
	pid_t w;
	do
		w = waitpid(pid, &st, 0);
	while (w < 0 && errno == EINTR);
	child_pid = 0;
	if (w < 0)
		return set_err("waitpid: %s", strerror(errno));
	if (WIFSIGNALED(st))
		return set_err(
		    "the nng client was killed by signal %d (%s)%s%s",
		    WTERMSIG(st), strsignal(WTERMSIG(st)),
		    SH->err[0] ? ": " : "", SH->err);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || SH->rc != 0)
		return set_err("%s",
		               SH->err[0] ? SH->err : "the nng client failed");
	if (secs != NULL)
		*secs = SH->secs;
	if (samples != NULL)
		memcpy(samples, SH->samples, (size_t)q->n * sizeof(*samples));
	return 0;
}

/* ------------------------------------------------------------------ */
/* One run of one figure for one variant.                              */

static int run_throughput(enum api api, enum transport tr, size_t ws,
                          uint64_t total, double *secs)
{
	if (api == API_NNG && !in_client) {
		struct run_req q = {RUN_THROUGHPUT, tr, ws, total, 0, 0};
		return run_forked(&q, secs, NULL);
	}
	struct job job = {ROLE_SINK, api, tr, total};
	struct peer p;
	struct target t;
	struct link k;
	if (peer_start(&p, &job, &t) < 0)
		return -1;
	unsigned char *buf = malloc(ws);
	if (buf == NULL) {
		peer_abort(&p);
		return set_err("out of memory");
	}
	if (link_connect(&k, api, &t) < 0)
		goto fail;

	uint64_t t0 = tool_now_ns();
	for (uint64_t off = 0; off < total; off += ws) {
		tool_pat_fill(buf, ws, off);
		if (link_write_all(&k, buf, ws) < 0)
			goto fail_link;
	}
	unsigned char ack;
	size_t n = 0;
	int g = link_read(&k, &ack, 1, &n);
	uint64_t t1 = tool_now_ns();
	if (g <= 0) {
		if (g == 0)
			set_err("end of stream instead of the receiver's ack");
		goto fail_link;
	}
	link_close(&k);
	free(buf);

	struct report rep;
	if (peer_finish(&p, &rep) < 0)
		return -1;
	if (rep.bad_at != UINT64_MAX)
		return set_err(
		    "byte mismatch: the receiver saw a wrong byte at "
		    "offset %" PRIu64,
		    rep.bad_at);
	if (rep.count != total)
		return set_err("the receiver counted %" PRIu64
		               " bytes, %" PRIu64 " were sent",
		               rep.count, total);
	*secs = (double)(t1 - t0) / 1e9;
	return 0;

fail_link:
	link_close(&k);
fail:
	free(buf);
	peer_abort(&p);
	return -1;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Round-trip times in ns go to samples[0..n). */
static int run_latency(enum api api, enum transport tr, unsigned warm,
                       unsigned n, uint64_t *samples)
{
	if (api == API_NNG && !in_client) {
		struct run_req q = {RUN_LATENCY, tr, 0, 0, warm, n};
		return run_forked(&q, NULL, samples);
	}
	uint64_t total = (uint64_t)(warm + n) * PING_SIZE;
	struct job job = {ROLE_ECHO, api, tr, total};
	struct peer p;
	struct target t;
	struct link k;
	if (peer_start(&p, &job, &t) < 0)
		return -1;
	if (link_connect(&k, api, &t) < 0) {
		peer_abort(&p);
		return -1;
	}
	unsigned char out[PING_SIZE], in[PING_SIZE];
	for (unsigned i = 0; i < warm + n; i++) {
		tool_pat_fill(out, sizeof(out), (uint64_t)i * PING_SIZE);
		uint64_t t0 = tool_now_ns();
		if (link_write_all(&k, out, sizeof(out)) < 0)
			goto fail;
		size_t got = 0;
		/* At most one pass per byte. */
		for (int pass = 0; got < sizeof(in) && pass < PING_SIZE;
		     pass++) {
			size_t m = 0;
			int g = link_read(&k, in + got, sizeof(in) - got, &m);
			if (g <= 0) {
				if (g == 0)
					set_err("the echo server closed early");
				goto fail;
			}
			got += m;
		}
		uint64_t t1 = tool_now_ns();
		if (got != sizeof(in) || memcmp(in, out, sizeof(in)) != 0) {
			set_err(
			    "byte mismatch: round trip %u came back different",
			    i);
			goto fail;
		}
		if (i >= warm)
			samples[i - warm] = t1 - t0;
	}
	link_close(&k);
	struct report rep;
	if (peer_finish(&p, &rep) < 0)
		return -1;
	if (rep.count != total)
		return set_err("the echo server echoed %" PRIu64
		               " bytes, not %" PRIu64,
		               rep.count, total);
	return 0;

fail:
	link_close(&k);
	peer_abort(&p);
	return -1;
}

#ifdef CONDUIT_HAVE_TLS
/* The first connection of a resumed-handshake run is a full handshake:
 * keep its session, to be offered by every connection after it. */
static int keep_session(struct link *k)
{
	if (k->api == API_CONDUIT) {
		conduit_tls_session *ts = NULL;
		int rc = conduit_tls_session_get(k->flow, &ts);
		if (rc == CONDUIT_OK)
			rc = conduit_tls_set_session(G.ctx, ts);
		conduit_tls_session_free(ts);
		if (rc != CONDUIT_OK)
			return set_err("keeping the TLS session: %s",
			               cerr(conduit_ctx_error(G.ctx), rc));
		return 0;
	}
	mbedtls_ssl_session_free(&RT.sess);
	mbedtls_ssl_session_init(&RT.sess);
	int r = mbedtls_ssl_get_session(&k->rt->ssl, &RT.sess);
	if (r != 0)
		return set_err("mbedtls_ssl_get_session: %s", mbed_err(r));
	RT.offer = true;
	return 0;
}

static bool link_resumed(struct link *k)
{
	if (k->api == API_CONDUIT)
		return conduit_tls_resumed(k->flow) == 1;
	return k->rt != NULL && k->rt->resumed;
}

/* The run is over: no session is offered any more, so that full
 * handshakes stay full. */
static void drop_sessions(void)
{
	conduit_tls_clear_sessions(G.ctx);
	RT.offer = false;
	mbedtls_ssl_session_free(&RT.sess);
	mbedtls_ssl_session_init(&RT.sess);
}
#endif

/* resume: TLS only; every connection after the first resumes its
 * session (and must: a full one is an error here). */
static int run_connect(enum api api, enum transport tr, bool resume,
                       unsigned warm, unsigned n, double *secs)
{
	if (api == API_NNG && !in_client) {
		struct run_req q = {RUN_CONNECT, tr, 0, 0, warm, n};
		return run_forked(&q, secs, NULL);
	}
#ifndef CONDUIT_HAVE_TLS
	(void)resume; /* TLS only */
#endif
	struct job job = {ROLE_ACCEPT, api, tr, (uint64_t)warm + n};
	struct peer p;
	struct target t;
	if (peer_start(&p, &job, &t) < 0)
		return -1;
	uint64_t t0 = tool_now_ns();
	for (unsigned i = 0; i < warm + n; i++) {
		if (i == warm)
			t0 = tool_now_ns();
		struct link k;
		if (link_connect(&k, api, &t) < 0)
			goto fail;
		unsigned char c = 'h';
		size_t m = 0;
		int g = 0;
#ifdef CONDUIT_HAVE_TLS
		if (resume && i == 0)
			g = keep_session(&k);
		else if (resume && !link_resumed(&k))
			g = set_err("connection %u offered a session and got "
			            "a full handshake",
			            i);
#endif
		if (g != 0) {
			/* Already failed. */
		} else if (api == API_NNG) {
			/* No end of stream in nng: one byte there and back
			 * says the server has the connection. */
			g = link_write_all(&k, &c, 1);
			if (g == 0 && (g = link_read(&k, &c, 1, &m)) > 0)
				g = m == 1 && c == 'h'
				        ? 0
				        : set_err("the greeting came back "
				                  "changed");
		} else {
			/* End of stream says the server has accepted (and
			 * for TLS handshaked) and closed. */
			g = link_read(&k, &c, 1, &m);
			if (g > 0)
				g = set_err("the server sent data");
		}
		link_close(&k);
		if (g != 0)
			goto fail;
	}
	uint64_t t1 = tool_now_ns();
#ifdef CONDUIT_HAVE_TLS
	if (resume)
		drop_sessions();
#endif
	struct report rep;
	if (peer_finish(&p, &rep) < 0)
		return -1;
	if (rep.count != (uint64_t)warm + n)
		return set_err("the server accepted %" PRIu64
		               " connections, not %u",
		               rep.count, warm + n);
	*secs = (double)(t1 - t0) / 1e9;
	return 0;
fail:
#ifdef CONDUIT_HAVE_TLS
	if (resume)
		drop_sessions();
#endif
	peer_abort(&p);
	return -1;
}

/* ------------------------------------------------------------------ */
/* Figures and output                                                  */

struct params {
	bool quick;
	unsigned repeats;    /* rounds of runs (one per variant) */
	double target_s;     /* aimed-at length of one throughput run */
	uint64_t warm_bytes; /* warm-up and calibration run */
	unsigned rtt_warm, rtt_n;
	unsigned conn_warm, conn_n;
	unsigned hs_warm, hs_n; /* TLS handshakes */
};

static struct params P;

#define MAX_REPEATS BENCH_MAX_REPEATS

/* Whether a figure has an nng variant. */
enum nng_state {
	NNG_NONE,     /* nng has nothing like it (vchan, lwIP, resolver) */
	NNG_MISSING,  /* it would, but nng (or its TLS) is not here: n/a */
	NNG_MEASURED, /* measured in the same run */
	NNG_FAILED,   /* nng failed here: said on stderr, the column says so */
};

/*
 * One figure.  Every repeat is a round of runs next to each other in
 * time, one per variant; machine speed drifts over seconds here (a shared
 * host), so a round's own conduit/baseline quotient is the fair comparison,
 * and the figure's ratio is the median of those quotients (the same for
 * conduit/nng).  The value columns are the medians of each variant's runs;
 * the best runs and every round's quotients go to the JSON output.
 */
struct row {
	char transport[24];
	char figure[40];
	char label[96];
	char unit[16];
	char baseline[64];
	char param_name[24]; /* "write_size", or "" */
	uint64_t param;
	const char *amount_name; /* NULL for figures from other sections */
	uint64_t amount;
	bool higher_better;
	int decimals;
	enum nng_state nng;
	unsigned n;
	double run[NAPI][MAX_REPEATS]; /* [API_RAW] is the baseline */
	double pair[MAX_REPEATS];      /* conduit / baseline of each round */
	double pair_nng[MAX_REPEATS];  /* conduit / nng of each round */
	double med[NAPI], best[NAPI];
	double ratio, rmin, rmax, ratio_nng;
};

#define MAX_ROWS 160
static struct row rows[MAX_ROWS];
static size_t nrows;
static bool json;
static bool emit_failed; /* a section's figure did not fit */

/* Lines for the reader (printed at once, and kept for the JSON). */
#define MAX_NOTES 24
static char notes[MAX_NOTES][640];
static size_t nnotes;

#ifdef CONDUIT_HAVE_TLS
/*
 * The ceiling of every TLS throughput figure here: the suite's cipher
 * alone (AES-128-GCM through mbedTLS, 16 KiB records, the record size),
 * on one core, in MiB/s; 0 if it could not be measured.  Each side of a
 * TLS transfer runs this cipher over every byte, so no TLS stack on
 * mbedTLS moves bytes faster than this.
 */
static double gcm_ceiling(bool quick)
{
	enum { REC = 16384 };
	static unsigned char in[REC], out[REC];
	unsigned char key[16] = {1}, iv[12] = {2}, tag[16];
	mbedtls_gcm_context g;
	mbedtls_gcm_init(&g);
	double mibs = 0;
	if (mbedtls_gcm_setkey(&g, MBEDTLS_CIPHER_ID_AES, key, 128) == 0) {
		uint64_t budget = (quick ? 100 : 400) * 1000000ull;
		uint64_t t0 = tool_now_ns(), t = t0;
		unsigned n = 0;
		/* Bounded in count and in time. */
		while (n < 200000 && t - t0 < budget) {
			iv[0] = (unsigned char)n;
			if (mbedtls_gcm_crypt_and_tag(
			        &g, MBEDTLS_GCM_ENCRYPT, REC, iv, sizeof(iv),
			        NULL, 0, in, out, sizeof(tag), tag) != 0)
				break;
			n++;
			if ((n & 15) == 0)
				t = tool_now_ns();
		}
		t = tool_now_ns();
		if (n > 0 && t > t0)
			mibs = (double)n * REC / ((double)(t - t0) / 1e9) /
			       (1024.0 * 1024.0);
	}
	mbedtls_gcm_free(&g);
	return mibs;
}
#endif

__attribute__((format(printf, 1, 2))) static void note(const char *fmt, ...)
{
	char buf[640];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (nnotes < MAX_NOTES)
		snprintf(notes[nnotes++], sizeof(notes[0]), "%s", buf);
	if (!json) {
		printf("%s\n", buf);
		fflush(stdout);
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(const double *v, unsigned n)
{
	double s[MAX_REPEATS];
	if (n == 0)
		return 0;
	memcpy(s, v, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src != NULL ? src : "?");
}

static struct row *add_row_named(const char *transport, const char *figure,
                                 const char *unit, bool higher_better,
                                 int decimals, const char *baseline,
                                 enum nng_state nng)
{
	if (nrows == MAX_ROWS)
		return NULL;
	struct row *r = &rows[nrows++];
	memset(r, 0, sizeof(*r));
	copy_str(r->transport, sizeof(r->transport), transport);
	copy_str(r->figure, sizeof(r->figure), figure);
	copy_str(r->unit, sizeof(r->unit), unit);
	copy_str(r->baseline, sizeof(r->baseline), baseline);
	r->higher_better = higher_better;
	r->decimals = decimals;
	r->nng = nng;
	return r;
}

/* Whether transport tr has an nng variant here. */
static enum nng_state nng_state_of(enum transport tr)
{
	if (tr == T_RESOLVE)
		return NNG_NONE;
	if (!G.nng || (tr == T_TLS && !G.nng_tls))
		return NNG_MISSING;
	return NNG_MEASURED;
}

static struct row *add_row(enum transport tr, const char *figure,
                           const char *unit, bool higher_better, int decimals)
{
	return add_row_named(tr_name[tr], figure, unit, higher_better, decimals,
	                     tr_base[tr], nng_state_of(tr));
}

/* Record one round's runs (v[API_NNG] only when the row has nng). */
static void row_add(struct row *r, const double *v)
{
	if (r->n == MAX_REPEATS)
		return;
	for (int a = 0; a < NAPI; a++)
		r->run[a][r->n] = v[a];
	double c = v[API_CONDUIT];
	r->pair[r->n] = v[API_RAW] > 0 ? c / v[API_RAW] : 0;
	r->pair_nng[r->n] = v[API_NNG] > 0 ? c / v[API_NNG] : 0;
	r->n++;
}

/* What nng is in a section's heading. */
static const char *nng_what(const struct row *r)
{
	if (r->nng == NNG_NONE)
		return "none";
	if (r->nng == NNG_MISSING)
		return "n/a";
	if (strcmp(r->transport, "unix") == 0)
		return "ipc://, pair1 messages";
	if (strcmp(r->transport, "tcp") == 0)
		return "tcp://, pair1 messages";
	return "tls+tcp://, pair1 messages";
}

static void print_row(const struct row *r)
{
	static char last_tr[24], last_base[64];
	if (strcmp(last_tr, r->transport) != 0 ||
	    strcmp(last_base, r->baseline) != 0) {
		printf("%s: baseline %s; nng: %s\n", r->transport, r->baseline,
		       nng_what(r));
		copy_str(last_tr, sizeof(last_tr), r->transport);
		copy_str(last_base, sizeof(last_base), r->baseline);
	}
	char nv[32], nr[16], br[16];
	/* A baseline of 0 (no heap at all) has no meaningful quotient. */
	if (r->med[API_RAW] > 0)
		snprintf(br, sizeof(br), "%.3f", r->ratio);
	else
		copy_str(br, sizeof(br), "-");
	if (r->nng == NNG_MEASURED) {
		snprintf(nv, sizeof(nv), "%.*f", r->decimals, r->med[API_NNG]);
		snprintf(nr, sizeof(nr), "%.3f", r->ratio_nng);
	} else {
		const char *s = r->nng == NNG_MISSING  ? "n/a"
		                : r->nng == NNG_FAILED ? "failed"
		                                       : "-";
		copy_str(nv, sizeof(nv), s);
		copy_str(nr, sizeof(nr), s);
	}
	/* A long label gets a line of its own, so the columns stay. */
	const char *label = r->label;
	if (strlen(label) > 25) {
		printf("  %s\n", label);
		label = "";
	}
	printf("  %-25s %10.*f %10.*f %6s %10s %6s\n", label, r->decimals,
	       r->med[API_CONDUIT], r->decimals, r->med[API_RAW], br, nv, nr);
	fflush(stdout);
}

static void row_finish(struct row *r)
{
	for (int a = 0; a < NAPI; a++) {
		r->med[a] = median(r->run[a], r->n);
		r->best[a] = r->n ? r->run[a][0] : 0;
		for (unsigned i = 1; i < r->n; i++)
			if (r->higher_better ? r->run[a][i] > r->best[a]
			                     : r->run[a][i] < r->best[a])
				r->best[a] = r->run[a][i];
	}
	r->ratio = median(r->pair, r->n);
	r->ratio_nng = median(r->pair_nng, r->n);
	r->rmin = r->rmax = r->n ? r->pair[0] : 0;
	for (unsigned i = 1; i < r->n; i++) {
		if (r->pair[i] < r->rmin)
			r->rmin = r->pair[i];
		if (r->pair[i] > r->rmax)
			r->rmax = r->pair[i];
	}
	if (!json)
		print_row(r);
}

void bench_emit(const struct bench_figure *f)
{
	if (f == NULL)
		return;
	struct row *r =
	    add_row_named(f->transport, f->figure, f->unit, f->higher_better,
	                  f->decimals, f->baseline, NNG_NONE);
	if (r == NULL) {
		fprintf(stderr,
		        "conduit-bench: more than %d figures; %s %s "
		        "is left out\n",
		        MAX_ROWS, f->transport ? f->transport : "?",
		        f->figure ? f->figure : "?");
		emit_failed = true;
		return;
	}
	copy_str(r->label, sizeof(r->label),
	         f->label != NULL ? f->label : f->figure);
	if (f->param_name != NULL) {
		copy_str(r->param_name, sizeof(r->param_name), f->param_name);
		r->param = f->param;
	}
	unsigned n = f->n < MAX_REPEATS ? f->n : MAX_REPEATS;
	for (unsigned i = 0; i < n; i++) {
		double v[NAPI] = {0, 0, 0};
		v[API_RAW] = f->base[i];
		v[API_CONDUIT] = f->conduit[i];
		row_add(r, v);
	}
	row_finish(r);
}

/* The variants of transport tr, and their order in round i: rotating, so
 * that none always runs on a cold or a warm machine. */
struct order {
	unsigned n;
	enum api v[NAPI];
};

static void order_of(struct order *o, enum transport tr, unsigned i,
                     bool with_nng)
{
	enum api all[NAPI] = {API_RAW, API_CONDUIT, API_NNG};
	unsigned n = with_nng && nng_state_of(tr) == NNG_MEASURED ? 3 : 2;
	o->n = n;
	for (unsigned k = 0; k < n; k++)
		o->v[k] = all[(i + k) % n];
}

/* The two-variant order of the resolver. */
static enum api turn(unsigned i, int k)
{
	return ((i + (unsigned)k) & 1) ? API_CONDUIT : API_RAW;
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
	        tr_name[tr], what, errmsg);
	for (size_t i = 0; i < n; i++)
		rs[i]->nng = NNG_FAILED;
}

static int fail_figure(enum transport tr, const char *what, enum api api)
{
	fprintf(stderr, "conduit-bench: %s %s (%s): %s\n", tr_name[tr], what,
	        api_name[api], errmsg);
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
		set_err("too many figures");
		return fail_figure(tr, what, API_RAW);
	}
	snprintf(r->label, sizeof(r->label), "throughput %u KiB (MiB/s)",
	         (unsigned)(ws / 1024));
	if (!nng_ok)
		nng_gives_up(&r, 1, tr, what);
	copy_str(r->param_name, sizeof(r->param_name), "write_size");
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
		set_err(s == NULL ? "out of memory" : "too many figures");
		return fail_figure(tr, "latency", API_RAW);
	}
	snprintf(rm->label, sizeof(rm->label), "latency %d B median (us)",
	         PING_SIZE);
	snprintf(rp->label, sizeof(rp->label), "latency %d B p99 (us)",
	         PING_SIZE);
	struct row *both[2] = {rm, rp};
	for (int j = 0; j < 2; j++) {
		copy_str(both[j]->param_name, sizeof(both[j]->param_name),
		         "message_size");
		both[j]->param = PING_SIZE;
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
		set_err("too many figures");
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

/*
 * Resolutions per second of a URI that rules resolve without DNS
 * (https://logger.xen/ through "map *.xen ..."), beside the baseline of
 * parsing the resulting endpoint URI alone: the ratio is what the service
 * table, the rule and the TLS merge cost on top of one parse.  One
 * process, no peer.
 */
#define RESOLVE_URI  "https://logger.xen/"
#define RESOLVE_RULE "map *.xen unix-abstract://xen-{label}-{scheme}\n"

static int resolve_loop(enum api a, conduit_ctx *ctx, const char *result,
                        unsigned n, double *secs)
{
	uint64_t t0 = tool_now_ns();
	for (unsigned i = 0; i < n; i++) {
		conduit_endpoint *ep = NULL;
		int rc = a == API_CONDUIT
		             ? conduit_resolve(&ep, ctx, RESOLVE_URI)
		             : conduit_endpoint_parse(&ep, result, NULL, 0);
		if (rc != CONDUIT_OK) {
			set_err("%s", conduit_ctx_error(ctx));
			return -1;
		}
		conduit_endpoint_free(ep);
	}
	*secs = (double)(tool_now_ns() - t0) / 1e9;
	return 0;
}

static int measure_resolve(void)
{
	struct row *r = add_row(T_RESOLVE, "resolve_rate", "1/s", true, 0);
	conduit_ctx *ctx = NULL;
	if (r == NULL || conduit_ctx_new(&ctx) != CONDUIT_OK ||
	    conduit_ctx_add_rules(ctx, RESOLVE_RULE, "bench") != CONDUIT_OK) {
		set_err("cannot set up the resolver context");
		conduit_ctx_free(ctx);
		return fail_figure(T_RESOLVE, "resolutions", API_CONDUIT);
	}
	snprintf(r->label, sizeof(r->label), "rule-based resolve (/s)");
	conduit_endpoint *ep = NULL;
	if (conduit_resolve(&ep, ctx, RESOLVE_URI) != CONDUIT_OK) {
		set_err("%s", conduit_ctx_error(ctx));
		conduit_ctx_free(ctx);
		return fail_figure(T_RESOLVE, "resolutions", API_CONDUIT);
	}
	char result[256];
	snprintf(result, sizeof(result), "%s", conduit_endpoint_uri(ep));
	conduit_endpoint_free(ep);
	unsigned n = P.quick ? 50000 : 200000;
	r->amount_name = "resolutions";
	r->amount = n;
	double s = 0;
	for (int k = 0; k < 2; k++) /* warm-up */
		if (resolve_loop(turn(0, k), ctx, result, n / 10, &s) < 0) {
			conduit_ctx_free(ctx);
			return fail_figure(T_RESOLVE, "resolutions",
			                   turn(0, k));
		}
	for (unsigned i = 0; i < P.repeats; i++) {
		double v[NAPI] = {0, 0, 0};
		for (int k = 0; k < 2; k++) {
			enum api a = turn(i, k);
			if (resolve_loop(a, ctx, result, n, &s) < 0) {
				conduit_ctx_free(ctx);
				return fail_figure(T_RESOLVE, "resolutions", a);
			}
			v[a] = s > 0 ? n / s : 0;
		}
		row_add(r, v);
	}
	conduit_ctx_free(ctx);
	row_finish(r);
	return 0;
}

static void json_str(const char *s)
{
	putchar('"');
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c == '\n')
			putchar(' '); /* notes are wrapped for the terminal */
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void json_list(const double *v, unsigned n, int decimals)
{
	putchar('[');
	for (unsigned i = 0; i < n; i++)
		printf("%s%.*f", i ? ", " : "", decimals, v[i]);
	putchar(']');
}

/* The names of the sections asked for, as --only took them. */
static const char *const section_name[] = {"unix",  "tcp",  "tls",  "resolver",
                                           "vchan", "lwip", "scale"};
#define NSECTIONS (sizeof(section_name) / sizeof(section_name[0]))

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
				       section_name[i]);
				first = 0;
			}
		putchar(']');
	}
	printf(",\n  \"repeats\": %u,\n", P.repeats);
#ifdef CONDUIT_HAVE_TLS
	printf("  \"tls\": {\"version\": \"TLSv1.2\", \"suite\": \"%s\", "
	       "\"curve\": \"secp256r1\", \"certificate\": \"EC P-256, "
	       "self-signed, made at start\", \"mbedtls\": \"%s\"},\n",
	       pin_suite_name(), MBEDTLS_VERSION_STRING);
#else
	printf("  \"tls\": null,\n");
#endif
#ifdef CONDUIT_BENCH_NNG
	printf("  \"nng\": {\"built\": true, \"version\": \"%d.%d.%d\", "
	       "\"tls\": %s, \"protocol\": \"pair1\"},\n",
	       NNG_MAJOR_VERSION, NNG_MINOR_VERSION, NNG_PATCH_VERSION,
	       G.nng_tls ? "true" : "false");
#else
	printf("  \"nng\": {\"built\": false},\n");
#endif
	printf("  \"method\": \"each repeat runs every variant back to back "
	       "(order rotating); conduit, baseline and nng are the medians "
	       "of the runs, best_* the best runs, ratio (ratio_nng) the "
	       "median of the repeats' conduit/baseline (conduit/nng) "
	       "quotients; nng moves messages (one nng_send per write), "
	       "throughput counts payload bytes\",\n  \"notes\": [");
	for (size_t i = 0; i < nnotes; i++) {
		printf("%s\n    ", i ? "," : "");
		json_str(notes[i]);
	}
	printf("%s],\n  \"results\": [", nnotes ? "\n  " : "");
	for (size_t i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		int d = r->decimals + 2;
		bool has_nng = r->nng == NNG_MEASURED;
		printf("%s\n    {\"transport\": ", i ? "," : "");
		json_str(r->transport);
		printf(", \"figure\": ");
		json_str(r->figure);
		printf(", \"label\": ");
		json_str(r->label);
		printf(", \"unit\": ");
		json_str(r->unit);
		printf(", \"better\": \"%s\",\n     ",
		       r->higher_better ? "higher" : "lower");
		if (r->param_name[0] != '\0') {
			json_str(r->param_name);
			printf(": %" PRIu64 ", ", r->param);
		}
		if (r->amount_name != NULL)
			printf("\"%s\": %" PRIu64 ", ", r->amount_name,
			       r->amount);
		printf("\"baseline_name\": ");
		json_str(r->baseline);
		printf(",\n     \"conduit\": %.*f, \"baseline\": %.*f, ", d,
		       r->med[API_CONDUIT], d, r->med[API_RAW]);
		if (r->med[API_RAW] > 0)
			printf("\"ratio\": %.4f, \"ratio_min\": %.4f, "
			       "\"ratio_max\": %.4f,\n     ",
			       r->ratio, r->rmin, r->rmax);
		else
			printf("\"ratio\": null, \"ratio_min\": null, "
			       "\"ratio_max\": null,\n     ");
		if (has_nng)
			printf("\"nng\": %.*f, \"ratio_nng\": %.4f,\n     ", d,
			       r->med[API_NNG], r->ratio_nng);
		else
			printf("\"nng\": null, \"ratio_nng\": null,\n     ");
		printf("\"best_conduit\": %.*f, \"best_baseline\": %.*f", d,
		       r->best[API_CONDUIT], d, r->best[API_RAW]);
		if (has_nng)
			printf(", \"best_nng\": %.*f", d, r->best[API_NNG]);
		printf(",\n     \"runs\": {\"conduit\": ");
		json_list(r->run[API_CONDUIT], r->n, d);
		printf(", \"baseline\": ");
		json_list(r->run[API_RAW], r->n, d);
		if (has_nng) {
			printf(", \"nng\": ");
			json_list(r->run[API_NNG], r->n, d);
		}
		printf("},\n     \"pairs\": ");
		json_list(r->pair, r->n, 4);
		if (has_nng) {
			printf(", \"pairs_nng\": ");
			json_list(r->pair_nng, r->n, 4);
		}
		printf("}");
	}
	printf("\n  ]\n}\n");
}

/* ------------------------------------------------------------------ */
/* Set-up and clean-up                                                 */

static void cleanup(void)
{
	conduit_ctx_free(G.ctx);
	G.ctx = NULL;
#ifdef CONDUIT_HAVE_TLS
	if (RT.ready)
		rt_free();
#endif
	if (SH != NULL)
		munmap(SH, sh_size);
	SH = NULL;
	if (G.dir[0] != '\0')
		tool_rmtree(G.dir);
	G.dir[0] = '\0';
}

/* Interrupted: kill the server, remove what we made, die of the signal.
 * Only async-signal-safe calls. */
static void on_signal(int sig)
{
	pid_t pid = (pid_t)child_pid;
	if (pid > 0)
		kill(pid, SIGKILL);
	if (G.sock[0] != '\0')
		unlink(G.sock);
	if (G.dir[0] != '\0')
		rmdir(G.dir);
	signal(sig, SIG_DFL);
	raise(sig);
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
		return set_err("TMPDIR is too long");
	}
	if (mkdtemp(G.dir) == NULL) {
		set_err("mkdtemp %s: %s", G.dir, strerror(errno));
		G.dir[0] = '\0';
		return -1;
	}
	n = snprintf(G.sock, sizeof(G.sock), "%s/bench.sock", G.dir);
	struct sockaddr_un un;
	if (n < 0 || (size_t)n + 1 > sizeof(un.sun_path))
		return set_err("socket path %s is longer than a unix socket "
		               "allows; set TMPDIR to a shorter directory",
		               G.sock);
	make_unix_uri();
	return 0;
}

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

enum {
	S_UNIX = 1u << 0,
	S_TCP = 1u << 1,
	S_TLS = 1u << 2,
	S_RESOLVER = 1u << 3,
	S_VCHAN = 1u << 4,
	S_LWIP = 1u << 5,
	S_SCALE = 1u << 6,
};

/* Add the sections of a comma-separated list to *mask; -1 on a bad one. */
static int parse_only(const char *list, unsigned *mask)
{
	const char *p = list;
	for (int guard = 0; guard < 64; guard++) {
		size_t len = strcspn(p, ",");
		size_t i = 0;
		for (; i < NSECTIONS; i++)
			if (strlen(section_name[i]) == len &&
			    strncmp(p, section_name[i], len) == 0)
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

#ifdef CONDUIT_HAVE_TLS
int bench_tls_identity(const char **cert_pem, const char **key_pem,
                       const char **why)
{
	if (G.cert_pem[0] == '\0' &&
	    ((!RT.ready && rt_rng_init() < 0) || tls_make_cert() < 0)) {
		G.cert_pem[0] = '\0';
		*why = errmsg;
		return -1;
	}
	*cert_pem = G.cert_pem;
	*key_pem = G.key_pem;
	return 0;
}

/* The certificate, raw mbedTLS's configurations and the client context's
 * trust in the certificate. */
static int tls_setup(void)
{
	const char *cert, *key, *why;
	if (bench_tls_identity(&cert, &key, &why) < 0 || rt_setup() < 0)
		return -1;
	int rc = conduit_tls_set_ca_pem(G.ctx, G.cert_pem, strlen(G.cert_pem));
	if (rc != CONDUIT_OK)
		return set_err("conduit_tls_set_ca_pem: %s",
		               cerr(conduit_ctx_error(G.ctx), rc));
	return 0;
}
#endif

#if defined(CONDUIT_BENCH_NNG) && defined(CONDUIT_HAVE_TLS)
/* Whether this nng was built with TLS.  Asked in a child: nng may not
 * start in this process, which forks afterwards. */
static bool nng_has_tls(int *why)
{
	pid_t parent = getpid();
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		*why = -1;
		return false;
	}
	if (pid == 0) {
		child_setup(parent, -1);
		nng_tls_config *c = NULL;
		int rv = nng_tls_config_alloc(&c, NNG_TLS_MODE_SERVER);
		if (rv == 0)
			nng_tls_config_free(c);
		_exit(rv > 0 && rv < 256 ? rv : rv == 0 ? 0 : 255);
	}
	int st = 0;
	pid_t w;
	do
		w = waitpid(pid, &st, 0);
	while (w < 0 && errno == EINTR);
	*why = w == pid && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	return *why == 0;
}
#endif

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

int main(int argc, char **argv)
{
#ifdef CONDUIT_HAVE_VCHAN
	const char *role = getenv("CONDUIT_BENCH_ROLE");
	if (role != NULL)
		return bench_role_main(role);
#endif
	unsigned only = 0;
	bool quick = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--quick") == 0)
			quick = true;
		else if (strcmp(a, "--json") == 0)
			json = true;
		else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(a, "--only") == 0 && i + 1 < argc) {
			if (parse_only(argv[++i], &only) < 0)
				return 2;
		} else if (strncmp(a, "--only=", 7) == 0) {
			if (parse_only(a + 7, &only) < 0)
				return 2;
		} else {
			fprintf(stderr,
			        "conduit-bench: unknown or incomplete "
			        "option '%s'\n",
			        a);
			usage(stderr);
			return 2;
		}
	}
	if (only == 0)
		only = ~0u;
	const unsigned only_asked = only == ~0u ? 0 : only;

	if (quick)
		P = (struct params){.quick = true,
		                    .repeats = 3,
		                    .target_s = 0.05,
		                    .warm_bytes = 4 * 1024 * 1024,
		                    .rtt_warm = 100,
		                    .rtt_n = 1000,
		                    .conn_warm = 30,
		                    .conn_n = 300,
		                    .hs_warm = 5,
		                    .hs_n = 40};
	else
		P = (struct params){.quick = false,
		                    .repeats = 11,
		                    .target_s = 0.2,
		                    .warm_bytes = 32 * 1024 * 1024,
		                    .rtt_warm = 1000,
		                    .rtt_n = 10000,
		                    .conn_warm = 200,
		                    .conn_n = 2000,
		                    .hs_warm = 20,
		                    .hs_n = 300};

	struct utsname u;
	if (uname(&u) < 0)
		memset(&u, 0, sizeof(u));
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	choose_cpus();
	bench_pin(G.cpu[0]);

	if (make_tmpdir() < 0 || shared_init(P.rtt_n) < 0) {
		fprintf(stderr, "conduit-bench: %s\n", errmsg);
		cleanup();
		return 1;
	}
	tool_catch_signals(on_signal, 0);

	if (conduit_ctx_new(&G.ctx) != CONDUIT_OK) {
		fprintf(stderr,
		        "conduit-bench: conduit_ctx_new: out of memory\n");
		cleanup();
		return 1;
	}
#ifdef CONDUIT_HAVE_TLS
	if ((only & S_TLS) && tls_setup() < 0) {
		fprintf(stderr, "conduit-bench: TLS set-up: %s\n", errmsg);
		cleanup();
		return 1;
	}
#endif
#ifdef CONDUIT_BENCH_NNG
	G.nng = true;
#ifdef CONDUIT_HAVE_TLS
	int nng_why = 0;
	if (only & S_TLS)
		G.nng_tls = nng_has_tls(&nng_why);
#endif
#endif

	if (!json) {
		printf(
		    "conduit-bench: conduit %d.%d.%d on %s %s %s, %ld CPUs%s\n",
		    CONDUIT_VERSION_MAJOR, CONDUIT_VERSION_MINOR,
		    CONDUIT_VERSION_PATCH, u.sysname, u.release, u.machine,
		    cpus, quick ? " (quick)" : "");
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
#ifdef CONDUIT_BENCH_NNG
	note("nng %d.%d.%d, pair1: message-based, one nng_send() per write "
	     "and one nng_recv()\nper read, throughput counts payload bytes; "
	     "its client is a forked process.",
	     NNG_MAJOR_VERSION, NNG_MINOR_VERSION, NNG_PATCH_VERSION);
#else
	note("nng: not found when this was built (Debian's libnng-dev), so "
	     "its columns say\nn/a.  nng is a benchmark-only dependency: the "
	     "library never needs it.");
#endif
#ifdef CONDUIT_HAVE_TLS
	if (only & S_TLS) {
		note("TLS: TLSv1.2 %s, curve P-256, an EC P-256\n"
		     "self-signed certificate made at start, verified by every "
		     "client; mbedTLS %s.\nResumed handshakes: the first "
		     "connection's session (a ticket) is offered by\nevery "
		     "later one, which must resume; nng keeps no TLS sessions, "
		     "so it has no\nsuch figure.",
		     pin_suite_name(), MBEDTLS_VERSION_STRING);
		note(
		    "TLS ceiling: AES-128-GCM alone, one core, 16 KiB records: "
		    "%.0f MiB/s.\nEach side of a transfer runs it over every "
		    "byte; no TLS on mbedTLS goes faster.",
		    gcm_ceiling(P.quick));
#ifdef CONDUIT_BENCH_NNG
		if (!G.nng_tls)
			note("nng: this build of nng has no TLS "
			     "(nng_tls_config_alloc: %s); its tls+tcp column "
			     "says n/a.",
			     nng_why > 0 ? nng_strerror(nng_why)
			                 : "the probe failed");
#endif
	}
#endif
	if (!json) {
		printf("\n  %-25s %10s %10s %6s %10s %6s\n", "figure",
		       "conduit", "baseline", "c/base", "nng", "c/nng");
		fflush(stdout);
	}

	struct bench_settings bs = {P.quick, P.repeats, P.target_s};
	int rc = 0;
	if (rc == 0 && (only & S_UNIX))
		rc = run_transport(T_UNIX);
	if (rc == 0 && (only & S_TCP))
		rc = run_transport(T_TCP);
	if (rc == 0 && (only & S_TLS)) {
#ifdef CONDUIT_HAVE_TLS
#ifdef CONDUIT_BENCH_NNG
		pin_active = true; /* the forked processes inherit it */
#endif
		rc = run_transport(T_TLS);
#ifdef CONDUIT_BENCH_NNG
		pin_active = false;
#endif
#else
		note("tls: not built (configure with -DCONDUIT_WITH_TLS=ON "
		     "and libmbedtls-dev): no TLS figures.");
#endif
	}
	if (rc == 0 && (only & S_RESOLVER))
		rc = measure_resolve();
	if (rc == 0 && (only & S_VCHAN)) {
#ifdef CONDUIT_HAVE_VCHAN
		rc = bench_vchan(&bs);
#else
		note("vchan: not built (configure with -DCONDUIT_WITH_VCHAN=ON "
		     "and libxen-dev): no vchan figures.");
#endif
	}
	if (rc == 0 && (only & S_LWIP)) {
#ifdef CONDUIT_HAVE_LWIP
		rc = bench_lwip(&bs);
#else
		note("lwip: not built (configure with -DCONDUIT_WITH_LWIP=ON "
		     "and liblwip-dev): no lwIP figures.");
#endif
	}
	if (rc == 0 && (only & S_SCALE))
		rc = bench_scale(&bs);
	if (rc == 0 && (only & S_RESOLVER) && !json)
		printf("\nresolver: %s through a *.xen rule; its baseline is\n"
		       "parsing the resulting endpoint URI alone.\n",
		       RESOLVE_URI);
	if (rc == 0 && !json && nng_state_of(T_TCP) == NNG_MEASURED)
		printf("nng connections: dial, one byte there and back, close "
		       "(nng has no end of\nstream to wait for).\n");
	cleanup();
	if (rc != 0 || emit_failed)
		return 1;
	if (json)
		print_json(&u, cpus, only_asked);
	return 0;
}
