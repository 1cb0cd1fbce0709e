/*
 * demo.c - `conduit demo`: every backend of this build end to end, in one
 * run, on loopback and the project's emulations, with nothing to install
 * and no server to start by hand.
 *
 * Each leg starts a server, connects to it through the resolver with a URI
 * (conduit_connect), and runs one exchange: a header, a few hundred 64-byte
 * round trips echoed by the server (their median is the latency), then N
 * bytes of a pattern that the server checks byte by byte and acknowledges
 * with the count it verified (throughput is measured up to that
 * acknowledgement, so it includes the checking).
 *
 * Legs on host sockets and on lwIP run client and server in this process,
 * in one conduit_poll() loop.  vchan legs run between two processes playing
 * two Xen domains over the emulation in stubs/xen: this program runs
 * itself again (/proc/self/exe, hidden mode --peer) with the emulation
 * first on the children's library path only, so the demo process keeps the
 * real Xen libraries and never loads the emulation.  Children get their
 * TLS material on standard input and report on standard output, one
 * "key value" line each.
 *
 * TLS legs use a CA and a server certificate made in memory at start (EC
 * P-256, mbedTLS's x509write), so clients verify a real chain and the
 * server's name.  Every wait is bounded; children are reaped and temporary
 * files removed on every path, also after SIGINT, SIGTERM or SIGHUP.
 */
#include "demo.h"

#include "common.h"

#include <conduit/conduit.h>
#ifdef CONDUIT_HAVE_TLS
#include <conduit/tls.h>
#endif
#ifdef CONDUIT_HAVE_LWIP
#include <conduit/lwip.h>
#endif

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef CONDUIT_HAVE_TLS
#include "certs.h"

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#endif

#define KIB           1024ull
#define MIB           (1024ull * 1024ull)
#define DEFAULT_BYTES (8 * MIB)
#define MAX_BYTES     (4096 * MIB)
#define CHUNK         (64 * 1024)
#define PINGS         300
#define PING_LEN      64
#define HDR_LEN       16
#define ACK_LEN       16
#define MAGIC_HDR     0x6f6d6564u /* "demo" */
#define MAGIC_ACK     0x216b6361u /* "ack!" */
#define NO_OFFSET     UINT64_MAX
/* Turns of one side before the other gets its turn (in-process legs). */
#define STEP_TURNS 64
/* A loop gives up after this many turns whatever the clock says. */
#define MAX_TURNS 50000000L
#define WIDTH     80
#define INDENT    12

/* Sanitizer builds run several times slower. */
#if defined(__SANITIZE_ADDRESS__)
#define SLOW 4
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLOW 4
#endif
#endif
#ifndef SLOW
#define SLOW 1
#endif
/* A leg fails when nothing has moved for this long. */
#define STALL_MS (10000 * SLOW)

extern char **environ;

/* ------------------------------------------------------------------ */
/* The legs                                                            */

enum leg_kind { K_HOST, K_LWIP, K_VCHAN };

struct leg {
	const char *name;
	const char *title;
	enum leg_kind kind;
	bool tls;
	const char *missing; /* "CONDUIT_WITH_X=OFF" when not built */
	/* vchan legs: the server's listen URI and the client's URI */
	const char *listen;
	const char *connect;
};

#ifdef CONDUIT_HAVE_UNIX
#define NEED_UNIX NULL
#else
#define NEED_UNIX "CONDUIT_WITH_UNIX=OFF"
#endif
#ifdef CONDUIT_HAVE_TCP
#define NEED_TCP NULL
#else
#define NEED_TCP "CONDUIT_WITH_TCP=OFF"
#endif
#ifdef CONDUIT_HAVE_TLS
#define NEED_TLS NULL
#else
#define NEED_TLS "CONDUIT_WITH_TLS=OFF"
#endif
#ifdef CONDUIT_HAVE_VCHAN
#define NEED_VCHAN NULL
#else
#define NEED_VCHAN "CONDUIT_WITH_VCHAN=OFF"
#endif
#ifdef CONDUIT_HAVE_LWIP
#define NEED_LWIP NULL
#else
#define NEED_LWIP "CONDUIT_WITH_LWIP=OFF"
#endif
/* The first of two requirements that is missing. */
#define NEED2(a, b) ((a) != NULL ? (a) : (b))

/* Rings large enough for bulk transfer (the default ones sit in the
 * control page: 1 KiB and 2 KiB). */
#define RINGS      "read-ring=262144&write-ring=65536"
#define RULES_FILE "demo.rules"
#define RULES_TEXT "map *.xen vchan://{label}/{scheme}\n"

static const struct leg legs[] = {
    {"unix", "a Unix socket in a private directory", K_HOST, false, NEED_UNIX,
     NULL, NULL},
    {"tcp", "TCP on 127.0.0.1, a port the system picks", K_HOST, false,
     NEED_TCP, NULL, NULL},
    {"tls+tcp", "TLS over TCP, the certificate checked for 127.0.0.1", K_HOST,
     true, NEED2(NEED_TLS, NEED_TCP), NULL, NULL},
    {"tls+unix", "TLS over a Unix socket, checked for localhost", K_HOST, true,
     NEED2(NEED_TLS, NEED_UNIX), NULL, NULL},
    {"vchan", "Xen vchan between two emulated domains (2 processes)", K_VCHAN,
     false, NEED_VCHAN, "vchan://2/demo?" RINGS, "vchan://1/demo"},
    /* A vchan host names a domain, not a DNS name: TLS checks the
     * certificate against servername=. */
    {"tls+vchan", "TLS over vchan to the domain named \"logger\"", K_VCHAN,
     true, NEED2(NEED_TLS, NEED_VCHAN), "tls+vchan://logger/tls?" RINGS,
     "tls+vchan://logger/tls?servername=logger"},
    {"lwip", "TCP on lwIP over an in-memory Ethernet wire", K_LWIP, false,
     NEED_LWIP, NULL, NULL},
    {"tls+lwip", "TLS over TCP on lwIP", K_LWIP, true,
     NEED2(NEED_TLS, NEED_LWIP), NULL, NULL},
    {"rules", "a rules file sends https://logger.xen/ to TLS over vchan",
     K_VCHAN, true, NEED2(NEED_TLS, NEED_VCHAN),
     "tls+vchan://logger/https?" RINGS, "https://logger.xen/"},
};
#define NLEGS (sizeof(legs) / sizeof(legs[0]))

enum outcome { O_PASS, O_FAIL, O_NOT_BUILT };

struct result {
	enum outcome out;
	char uri[300];
	char endpoint[300];
	char explain[1200];
	char tls[300];
	char note_label[16];
	char note[200];
	uint64_t bytes; /* verified by the receiver */
	double secs;
	double rtt_us;
	int rtt_n;
	double setup_ms;
	char phase[64];
	char why[600];
};

struct opts {
	bool want[NLEGS];
	bool any;
	uint64_t bytes;
};

/* Set by SIGINT, SIGTERM and SIGHUP; every loop checks it. */
static volatile sig_atomic_t stop_sig;
static char tmp_dir[PATH_MAX];

static void on_signal(int sig)
{
	stop_sig = sig;
}

static void nap_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !stop_sig)
		;
}

__attribute__((format(printf, 3, 4))) static void setf(char *buf, size_t len,
                                                       const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

/* Messages travel on one line between processes. */
static void one_line(char *s)
{
	for (; *s != '\0'; s++)
		if (*s == '\n' || *s == '\r' || *s == '\t')
			*s = ' ';
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* ------------------------------------------------------------------ */
/* The exchange: one client and one server state machine per leg,      */
/* driven by conduit_poll().  Round trips use pattern offsets far past  */
/* the bulk stream's.                                                   */

#define PING_BASE (1ull << 56)

enum step {
	ST_ACCEPT,
	ST_CONNECT,
	ST_HEADER,
	ST_PING,
	ST_ECHO,
	ST_BULK,
	ST_VERIFY,
	ST_ACK,
	ST_REPLY,
	ST_EOF,
	ST_CLOSE,
	ST_DONE,
	ST_FAILED
};

static const char *step_name(enum step s)
{
	switch (s) {
	case ST_ACCEPT:
		return "accept";
	case ST_CONNECT:
		return "connect";
	case ST_HEADER:
		return "header";
	case ST_PING:
	case ST_ECHO:
		return "round trips";
	case ST_BULK:
	case ST_VERIFY:
		return "bulk transfer";
	case ST_ACK:
	case ST_REPLY:
		return "acknowledgement";
	case ST_EOF:
		return "end of stream";
	case ST_CLOSE:
		return "close";
	case ST_DONE:
		return "done";
	case ST_FAILED:
		break;
	}
	return "failed";
}

enum ack_status { ACK_OK, ACK_MISMATCH, ACK_LENGTH };

struct peer {
	bool server;
	conduit_flow *f;
	enum step st;
	unsigned interest;
	uint8_t *obuf, *ibuf;
	size_t olen, ooff, ilen;
	uint32_t pings, ping_i;
	uint64_t total;     /* bulk bytes announced in the header */
	uint64_t moved;     /* bulk bytes made (client) or received (server) */
	uint64_t echo_left; /* server: round-trip bytes still to echo */
	uint64_t bad_at;    /* server: first wrong byte, or NO_OFFSET */
	uint64_t verified;  /* client: what the server acknowledged */
	uint64_t ops;       /* successful operations, to tell a stall */
	double t_start, t_connected, t_ping, t_bulk0, t_bulk1;
	double *rtt;
	char tls[300];
	const char *checked_name; /* client: the name TLS verifies */
	enum step failed_in;
	char why[600];
};

__attribute__((format(printf, 2, 3))) static int peer_fail(struct peer *p,
                                                           const char *fmt, ...)
{
	if (p->st == ST_FAILED)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->why, sizeof(p->why), fmt, ap);
	va_end(ap);
	one_line(p->why);
	p->failed_in = p->st;
	p->st = ST_FAILED;
	return -1;
}

static bool peer_finished(const struct peer *p)
{
	return p->st == ST_DONE || p->st == ST_FAILED;
}

static int peer_init(struct peer *p, bool server, uint64_t total)
{
	memset(p, 0, sizeof(*p));
	p->server = server;
	p->st = server ? ST_ACCEPT : ST_CONNECT;
	p->interest = server ? CONDUIT_POLLIN : CONDUIT_POLLOUT;
	p->total = total;
	p->pings = PINGS;
	p->bad_at = NO_OFFSET;
	p->obuf = malloc(CHUNK);
	p->ibuf = malloc(CHUNK);
	p->rtt = calloc(PINGS, sizeof(double));
	if (p->obuf == NULL || p->ibuf == NULL || p->rtt == NULL)
		return peer_fail(p, "out of memory");
	return 0;
}

static void peer_free(struct peer *p)
{
	conduit_flow_free(p->f);
	p->f = NULL;
	free(p->obuf);
	free(p->ibuf);
	free(p->rtt);
	p->obuf = p->ibuf = NULL;
	p->rtt = NULL;
}

static bool is_want(int rc)
{
	return rc == CONDUIT_WANT_READ || rc == CONDUIT_WANT_WRITE;
}

/* What a failed operation means: 0 to wait for interest, -1 failed. */
static int io_result(struct peer *p, int rc, unsigned interest)
{
	if (is_want(rc)) {
		p->interest = interest;
		return 0;
	}
	if (rc == CONDUIT_EOF)
		return peer_fail(p, "the %s ended the stream early",
		                 p->server ? "client" : "server");
	const char *msg = conduit_flow_error(p->f);
	return peer_fail(p, "%s", msg[0] != '\0' ? msg : conduit_strerror(rc));
}

static int flush_out(struct peer *p)
{
	while (p->ooff < p->olen) {
		size_t n = 0;
		int rc = conduit_write(p->f, p->obuf + p->ooff,
		                       p->olen - p->ooff, &n);
		if (rc != CONDUIT_OK)
			return rc;
		if (n == 0)
			return CONDUIT_WANT_WRITE;
		p->ooff += n;
		p->ops++;
	}
	p->olen = p->ooff = 0;
	return CONDUIT_OK;
}

static void next_ping(struct peer *p)
{
	tool_pat_fill(p->obuf, PING_LEN,
	              PING_BASE + (uint64_t)p->ping_i * PING_LEN);
	p->olen = PING_LEN;
	p->ooff = 0;
	p->ilen = 0;
	p->t_ping = tool_now_us();
}

static void tls_note(struct peer *p)
{
#ifdef CONDUIT_HAVE_TLS
	if (!conduit_tls_is_tls(p->f))
		return;
	char subject[160];
	if (conduit_tls_peer_subject(p->f, subject, sizeof(subject)) !=
	    CONDUIT_OK)
		setf(subject, sizeof(subject), "(none)");
	const char *v = conduit_tls_version(p->f);
	const char *c = conduit_tls_cipher(p->f);
	const char *name = conduit_tls_servername(p->f);
	if (name == NULL)
		name = p->checked_name != NULL ? p->checked_name : "?";
	setf(p->tls, sizeof(p->tls),
	     "%s %s; server \"%s\" verified against the demo CA for %s",
	     v != NULL ? v : "?", c != NULL ? c : "?", subject, name);
#else
	(void)p;
#endif
}

/* One operation of the client; 1 progress, 0 wait, -1 failed. */
static int client_once(struct peer *p)
{
	size_t n = 0;
	int rc;
	switch (p->st) {
	case ST_CONNECT:
		rc = conduit_handshake(p->f);
		if (rc != CONDUIT_OK)
			return io_result(p, rc, CONDUIT_POLLOUT);
		p->t_connected = tool_now_us();
		tls_note(p);
		put32(p->obuf, MAGIC_HDR);
		put32(p->obuf + 4, p->pings);
		put64(p->obuf + 8, p->total);
		p->olen = HDR_LEN;
		p->ooff = 0;
		p->st = ST_HEADER;
		p->ops++;
		return 1;
	case ST_HEADER:
		if ((rc = flush_out(p)) != CONDUIT_OK)
			return io_result(p, rc, CONDUIT_POLLOUT);
		p->st = ST_PING;
		next_ping(p);
		return 1;
	case ST_PING:
		if (p->olen > 0) {
			if ((rc = flush_out(p)) != CONDUIT_OK)
				return io_result(p, rc, CONDUIT_POLLOUT);
			return 1;
		}
		rc = conduit_read(p->f, p->ibuf + p->ilen, PING_LEN - p->ilen,
		                  &n);
		if (rc != CONDUIT_OK)
			return io_result(p, rc, CONDUIT_POLLIN);
		p->ops++;
		p->ilen += n;
		if (p->ilen < PING_LEN)
			return 1;
		p->rtt[p->ping_i] = tool_now_us() - p->t_ping;
		if (tool_pat_check(p->ibuf, PING_LEN,
		                   PING_BASE + (uint64_t)p->ping_i *
		                                   PING_LEN) != UINT64_MAX)
			return peer_fail(p, "round trip %u came back altered",
			                 p->ping_i);
		if (++p->ping_i < p->pings) {
			next_ping(p);
		} else {
			p->st = ST_BULK;
			p->t_bulk0 = tool_now_us();
		}
		return 1;
	case ST_BULK:
		if (p->olen == 0) {
			if (p->moved == p->total) {
				/* End of stream tells the server to answer. */
				rc = conduit_shutdown(p->f, CONDUIT_SHUT_WR);
				if (rc != CONDUIT_OK)
					return io_result(p, rc,
					                 CONDUIT_POLLOUT);
				p->st = ST_ACK;
				p->ilen = 0;
				p->ops++;
				return 1;
			}
			size_t len = p->total - p->moved < CHUNK
			                 ? (size_t)(p->total - p->moved)
			                 : CHUNK;
			tool_pat_fill(p->obuf, len, p->moved);
			p->olen = len;
			p->ooff = 0;
			p->moved += len;
		}
		if ((rc = flush_out(p)) != CONDUIT_OK)
			return io_result(p, rc, CONDUIT_POLLOUT);
		return 1;
	case ST_ACK:
		rc = conduit_read(p->f, p->ibuf + p->ilen, ACK_LEN - p->ilen,
		                  &n);
		if (rc == CONDUIT_EOF)
			return peer_fail(p, "the server closed without an "
			                    "acknowledgement");
		if (rc != CONDUIT_OK)
			return io_result(p, rc, CONDUIT_POLLIN);
		p->ops++;
		p->ilen += n;
		if (p->ilen < ACK_LEN)
			return 1;
		p->t_bulk1 = tool_now_us();
		if (get32(p->ibuf) != MAGIC_ACK)
			return peer_fail(p, "the acknowledgement is garbled");
		uint32_t status = get32(p->ibuf + 4);
		uint64_t v = get64(p->ibuf + 8);
		if (status == ACK_MISMATCH)
			return peer_fail(p, "the server found byte %llu wrong",
			                 (unsigned long long)v);
		if (status != ACK_OK || v != p->total)
			return peer_fail(p,
			                 "the server received %llu bytes of "
			                 "%llu",
			                 (unsigned long long)v,
			                 (unsigned long long)p->total);
		p->verified = v;
		p->st = ST_EOF;
		return 1;
	case ST_EOF:
		rc = conduit_read(p->f, p->ibuf, CHUNK, &n);
		if (rc == CONDUIT_OK)
			return peer_fail(p,
			                 "%zu unexpected bytes after the "
			                 "acknowledgement",
			                 n);
		if (rc != CONDUIT_EOF)
			return io_result(p, rc, CONDUIT_POLLIN);
		p->st = ST_CLOSE;
		p->ops++;
		return 1;
	case ST_CLOSE:
		rc = conduit_close(p->f);
		if (rc != CONDUIT_OK)
			return io_result(p, rc, CONDUIT_POLLOUT);
		/* Socket flows keep their descriptor until freed. */
		conduit_flow_free(p->f);
		p->f = NULL;
		p->st = ST_DONE;
		p->ops++;
		return 1;
	default:
		return 0;
	}
}

/* One operation of the server; 1 progress, 0 wait, -1 failed. */
static int server_once(struct peer *p)
{
	size_t n = 0;
	int rc;
	switch (p->st) {
	case ST_HEADER:
		rc = conduit_read(p->f, p->ibuf + p->ilen, HDR_LEN - p->ilen,
		                  &n);
		if (rc != CONDUIT_OK)
			return io_result(p, rc, CONDUIT_POLLIN);
		p->ops++;
		p->ilen += n;
		if (p->ilen < HDR_LEN)
			return 1;
		if (get32(p->ibuf) != MAGIC_HDR)
			return peer_fail(p, "the client sent a garbled header");
		p->pings = get32(p->ibuf + 4);
		p->total = get64(p->ibuf + 8);
		p->echo_left = (uint64_t)p->pings * PING_LEN;
		p->ilen = 0;
		p->st = ST_ECHO;
		return 1;
	case ST_ECHO:
		if (p->olen > 0) {
			if ((rc = flush_out(p)) != CONDUIT_OK)
				return io_result(p, rc, CONDUIT_POLLOUT);
			return 1;
		}
		if (p->echo_left == 0) {
			p->st = ST_VERIFY;
			return 1;
		}
		/* Never past the round trips: the bulk bytes are checked. */
		rc = conduit_read(
		    p->f, p->obuf,
		    p->echo_left < CHUNK ? (size_t)p->echo_left : CHUNK, &n);
		if (rc != CONDUIT_OK)
			return io_result(p, rc, CONDUIT_POLLIN);
		p->ops++;
		p->olen = n;
		p->ooff = 0;
		p->echo_left -= n;
		return 1;
	case ST_VERIFY:
		rc = conduit_read(p->f, p->ibuf, CHUNK, &n);
		if (rc == CONDUIT_EOF) {
			uint32_t status = ACK_OK;
			uint64_t v = p->moved;
			if (p->bad_at != NO_OFFSET) {
				status = ACK_MISMATCH;
				v = p->bad_at;
			} else if (p->moved != p->total) {
				status = ACK_LENGTH;
			}
			put32(p->obuf, MAGIC_ACK);
			put32(p->obuf + 4, status);
			put64(p->obuf + 8, v);
			p->olen = ACK_LEN;
			p->ooff = 0;
			p->st = ST_REPLY;
			p->ops++;
			return 1;
		}
		if (rc != CONDUIT_OK)
			return io_result(p, rc, CONDUIT_POLLIN);
		p->ops++;
		if (p->bad_at == NO_OFFSET) {
			p->bad_at = tool_pat_check(p->ibuf, n, p->moved);
		}
		p->moved += n;
		return 1;
	case ST_REPLY:
		if ((rc = flush_out(p)) != CONDUIT_OK)
			return io_result(p, rc, CONDUIT_POLLOUT);
		p->st = ST_CLOSE;
		return 1;
	case ST_CLOSE:
		rc = conduit_close(p->f);
		if (rc != CONDUIT_OK)
			return io_result(p, rc, CONDUIT_POLLOUT);
		conduit_flow_free(p->f);
		p->f = NULL;
		p->ops++;
		if (p->bad_at != NO_OFFSET) {
			p->st = ST_VERIFY;
			return peer_fail(p, "byte %llu of the stream was wrong",
			                 (unsigned long long)p->bad_at);
		}
		if (p->moved != p->total) {
			p->st = ST_VERIFY;
			return peer_fail(p, "received %llu bytes of %llu",
			                 (unsigned long long)p->moved,
			                 (unsigned long long)p->total);
		}
		p->st = ST_DONE;
		return 1;
	default:
		return 0;
	}
}

static void peer_step(struct peer *p)
{
	for (int turn = 0; turn < STEP_TURNS && !peer_finished(p); turn++) {
		int r = p->server ? server_once(p) : client_once(p);
		if (r <= 0)
			break;
	}
	/* A failed side lets go at once, so the other one notices. */
	if (p->st == ST_FAILED && p->f != NULL) {
		conduit_flow_free(p->f);
		p->f = NULL;
	}
}

/* One leg's loop: a client, a server (accepting on l), or both. */
struct run {
	conduit_ctx *ctx;
	conduit_listener *l;
	struct peer *cli, *srv;
};

static bool run_finished(const struct run *r)
{
	return (r->cli == NULL || peer_finished(r->cli)) &&
	       (r->srv == NULL || peer_finished(r->srv));
}

static void run_fail_all(struct run *r, const char *fmt_phase_msg)
{
	struct peer *ps[2] = {r->cli, r->srv};
	for (int i = 0; i < 2; i++)
		if (ps[i] != NULL && !peer_finished(ps[i])) {
			peer_fail(ps[i], "%s", fmt_phase_msg);
			conduit_flow_free(ps[i]->f);
			ps[i]->f = NULL;
		}
}

static void run_loop(struct run *r)
{
	uint64_t last = tool_now_ms(), seen = UINT64_MAX;
	for (long turn = 0; turn < MAX_TURNS; turn++) {
		struct peer *s = r->srv;
		if (s != NULL && s->st == ST_ACCEPT) {
			int rc = conduit_accept(&s->f, r->l);
			if (rc == CONDUIT_OK) {
				s->st = ST_HEADER;
				s->interest = CONDUIT_POLLIN;
				s->ops++;
			} else if (!is_want(rc)) {
				peer_fail(s, "%s",
				          conduit_listener_error(r->l));
			}
		}
		if (r->cli != NULL)
			peer_step(r->cli);
		if (s != NULL && s->f != NULL)
			peer_step(s);
		if (run_finished(r))
			return;

		uint64_t ops = (r->cli ? r->cli->ops : 0) + (s ? s->ops : 0);
		uint64_t t = tool_now_ms();
		bool moved = ops != seen;
		if (moved) {
			seen = ops;
			last = t;
		} else if (t - last >= (uint64_t)STALL_MS) {
			char m[120];
			setf(m, sizeof(m), "timed out: nothing moved for %d s",
			     STALL_MS / 1000);
			run_fail_all(r, m);
			return;
		}
		if (stop_sig) {
			run_fail_all(r, "interrupted");
			return;
		}

		struct conduit_pollitem it[3];
		size_t n = 0;
		if (s != NULL && s->st == ST_ACCEPT)
			it[n++] = (struct conduit_pollitem){
			    .listener = r->l, .events = CONDUIT_POLLIN};
		if (s != NULL && s->f != NULL && !peer_finished(s))
			it[n++] = (struct conduit_pollitem){
			    .flow = s->f, .events = s->interest};
		if (r->cli != NULL && r->cli->f != NULL &&
		    !peer_finished(r->cli))
			it[n++] = (struct conduit_pollitem){
			    .flow = r->cli->f, .events = r->cli->interest};
		int left = (int)(STALL_MS - (t - last));
		int tmo = moved ? 0 : (left < 100 ? left : 100);
		size_t ready = 0;
		int rc = conduit_poll(r->ctx, it, n, tmo, &ready);
		if (rc != CONDUIT_OK) {
			char m[400];
			setf(m, sizeof(m), "poll: %s",
			     conduit_ctx_error(r->ctx));
			run_fail_all(r, m);
			return;
		}
	}
	run_fail_all(r, "gave up after too many turns");
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* The client's figures, or the failure (the client's first: it is the
 * one that saw the exchange from the start; the server's adds why). */
static void fill_result(struct result *res, struct peer *cli, struct peer *srv)
{
	if (cli->st == ST_DONE && (srv == NULL || srv->st == ST_DONE)) {
		res->out = O_PASS;
		res->bytes = cli->verified;
		res->secs = (cli->t_bulk1 - cli->t_bulk0) / 1e6;
		qsort(cli->rtt, cli->pings, sizeof(double), cmp_double);
		res->rtt_n = (int)cli->pings;
		res->rtt_us = cli->pings > 0 ? cli->rtt[cli->pings / 2] : 0;
		res->setup_ms = (cli->t_connected - cli->t_start) / 1e3;
		setf(res->tls, sizeof(res->tls), "%s", cli->tls);
		return;
	}
	res->out = O_FAIL;
	if (cli->st == ST_FAILED) {
		setf(res->phase, sizeof(res->phase), "client %s",
		     step_name(cli->failed_in));
		if (srv != NULL && srv->st == ST_FAILED)
			setf(res->why, sizeof(res->why),
			     "%s (server, in %s: %s)", cli->why,
			     step_name(srv->failed_in), srv->why);
		else
			setf(res->why, sizeof(res->why), "%s", cli->why);
	} else if (srv != NULL) {
		setf(res->phase, sizeof(res->phase), "server %s",
		     step_name(srv->failed_in));
		setf(res->why, sizeof(res->why), "%s", srv->why);
	}
}

/* Resolve uri with its explanation into res, then connect through the
 * resolver.  0, or -1 with the failure in res and in p. */
static int client_start(struct result *res, struct peer *p, conduit_ctx *ctx,
                        const char *uri)
{
	setf(res->uri, sizeof(res->uri), "%s", uri);
	conduit_endpoint *ep = NULL;
	conduit_explain *x = NULL;
	int rc = conduit_resolve_explain(&ep, &x, ctx, uri);
	size_t len = 0;
	res->explain[0] = '\0';
	for (size_t i = 0; x != NULL && i < conduit_explain_count(x); i++) {
		const char *s = conduit_explain_step(x, i);
		/* The URI and the endpoint are shown on their own. */
		if (strncmp(s, "uri:", 4) == 0 ||
		    strncmp(s, "endpoint:", 9) == 0)
			continue;
		int w = snprintf(res->explain + len, sizeof(res->explain) - len,
		                 "%s%s", len > 0 ? "; " : "", s);
		if (w < 0 || (size_t)w >= sizeof(res->explain) - len)
			break;
		len += (size_t)w;
	}
	conduit_explain_free(x);
	if (rc != CONDUIT_OK) {
		setf(res->phase, sizeof(res->phase), "client resolve");
		setf(res->why, sizeof(res->why), "%s", conduit_ctx_error(ctx));
		conduit_endpoint_free(ep);
		return peer_fail(p, "%s", conduit_ctx_error(ctx));
	}
	setf(res->endpoint, sizeof(res->endpoint), "%s",
	     conduit_endpoint_uri(ep));
	/* The name a TLS client checks: servername=, else the host. */
	static char checked[256];
	const char *sn = conduit_endpoint_option(ep, "servername");
	setf(checked, sizeof(checked), "%s",
	     sn != NULL ? sn : conduit_endpoint_host(ep));
	p->checked_name = checked;
	conduit_endpoint_free(ep);

	p->t_start = tool_now_us();
	if (conduit_connect(&p->f, ctx, uri) != CONDUIT_OK) {
		setf(res->phase, sizeof(res->phase), "client connect");
		setf(res->why, sizeof(res->why), "%s", conduit_ctx_error(ctx));
		return peer_fail(p, "%s", conduit_ctx_error(ctx));
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Throwaway TLS material, made in memory                              */

struct creds {
	char ca[4096];
	char cert[4096];
	char key[4096];
	bool made;
};

static struct creds creds;

#ifdef CONDUIT_HAVE_TLS
/* The names the server certificate carries, for every TLS leg. */
static const char *const san_dns[] = {"localhost", "logger", "logger.xen"};
static const unsigned char san_ip[][4] = {{127, 0, 0, 1}, {10, 0, 0, 2}};

#define DEMO_CA "CN=conduit demo CA,O=conduit demo"
static const struct tool_cert ca_cert = {.subject = DEMO_CA,
                                         .issuer = DEMO_CA,
                                         .serial = 1,
                                         .ca = true,
                                         .key_usage = true};
static const struct tool_cert server_cert = {
    .subject = "CN=conduit demo server,O=conduit demo",
    .issuer = DEMO_CA,
    .serial = 2,
    .key_usage = true,
    .dns = san_dns,
    .ndns = sizeof(san_dns) / sizeof(san_dns[0]),
    .ip4 = san_ip,
    .nip4 = sizeof(san_ip) / sizeof(san_ip[0])};

/* A CA and a server certificate it signed; 0 or an mbedTLS error. */
static int make_creds(struct creds *c, char *why, size_t whylen)
{
	mbedtls_entropy_context ent;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_pk_context cak, srvk;
	mbedtls_entropy_init(&ent);
	mbedtls_ctr_drbg_init(&drbg);
	mbedtls_pk_init(&cak);
	mbedtls_pk_init(&srvk);
	static const char pers[] = "conduit demo";
	const char *what = "seeding the random generator";
	int r = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &ent,
	                              (const unsigned char *)pers,
	                              sizeof(pers) - 1);
	if (r == 0) {
		what = "making the CA key";
		r = tool_key_new(&cak, &drbg);
	}
	if (r == 0) {
		what = "making the server key";
		r = tool_key_new(&srvk, &drbg);
	}
	if (r == 0) {
		what = "signing the CA certificate";
		r = tool_cert_pem(c->ca, sizeof(c->ca), &cak, &cak, &ca_cert,
		                  &drbg);
	}
	if (r == 0) {
		what = "signing the server certificate";
		r = tool_cert_pem(c->cert, sizeof(c->cert), &srvk, &cak,
		                  &server_cert, &drbg);
	}
	if (r == 0) {
		what = "writing the server key";
		r = mbedtls_pk_write_key_pem(&srvk, (unsigned char *)c->key,
		                             sizeof(c->key));
	}
	if (r != 0)
		setf(why, whylen, "%s: mbedTLS error -0x%04x", what,
		     (unsigned)-r);
	c->made = r == 0;
	mbedtls_pk_free(&srvk);
	mbedtls_pk_free(&cak);
	mbedtls_ctr_drbg_free(&drbg);
	mbedtls_entropy_free(&ent);
	return r;
}

/* The context trusts the demo CA (client) and/or serves its certificate. */
static int ctx_use_creds(conduit_ctx *ctx, bool client, bool server, char *why,
                         size_t whylen)
{
	if (client && conduit_tls_set_ca_pem(ctx, creds.ca, strlen(creds.ca)) !=
	                  CONDUIT_OK) {
		setf(why, whylen, "%s", conduit_ctx_error(ctx));
		return -1;
	}
	if (server && conduit_tls_set_cert_pem(
	                  ctx, creds.cert, strlen(creds.cert), creds.key,
	                  strlen(creds.key), NULL) != CONDUIT_OK) {
		setf(why, whylen, "%s", conduit_ctx_error(ctx));
		return -1;
	}
	return 0;
}
#endif

/* ------------------------------------------------------------------ */
/* Legs in this process: host sockets and lwIP                          */

/* Listen on listen_uri, connect to the listener's URI plus suffix. */
static void local_exchange(struct result *res, conduit_ctx *ctx,
                           const char *listen_uri, const char *suffix,
                           uint64_t bytes)
{
	struct peer cli, srv;
	conduit_listener *l = NULL;
	if (peer_init(&cli, false, bytes) < 0 ||
	    peer_init(&srv, true, bytes) < 0) {
		res->out = O_FAIL;
		setf(res->phase, sizeof(res->phase), "setup");
		setf(res->why, sizeof(res->why), "out of memory");
		goto out;
	}
	if (conduit_listen(&l, ctx, listen_uri) != CONDUIT_OK) {
		res->out = O_FAIL;
		setf(res->uri, sizeof(res->uri), "%s", listen_uri);
		setf(res->phase, sizeof(res->phase), "server listen");
		setf(res->why, sizeof(res->why), "%s", conduit_ctx_error(ctx));
		goto out;
	}
	char uri[400];
	setf(uri, sizeof(uri), "%s%s", conduit_listener_uri(l), suffix);
	if (client_start(res, &cli, ctx, uri) < 0) {
		res->out = O_FAIL;
		goto out;
	}
	struct run r = {.ctx = ctx, .l = l, .cli = &cli, .srv = &srv};
	run_loop(&r);
	fill_result(res, &cli, &srv);
out:
	peer_free(&cli);
	peer_free(&srv);
	conduit_listener_free(l);
}

static void host_leg(struct result *res, const struct leg *lg, uint64_t bytes)
{
	conduit_ctx *ctx = NULL;
	if (conduit_ctx_new(&ctx) != CONDUIT_OK) {
		res->out = O_FAIL;
		setf(res->phase, sizeof(res->phase), "setup");
		setf(res->why, sizeof(res->why), "no context: out of memory");
		return;
	}
#ifdef CONDUIT_HAVE_TLS
	if (lg->tls &&
	    ctx_use_creds(ctx, true, true, res->why, sizeof(res->why)) < 0) {
		res->out = O_FAIL;
		setf(res->phase, sizeof(res->phase), "setup");
		conduit_ctx_free(ctx);
		return;
	}
#endif
	char listen[PATH_MAX + 32];
	const char *suffix = "";
	if (strcmp(lg->name, "unix") == 0) {
		setf(listen, sizeof(listen), "unix://%s/demo.sock", tmp_dir);
	} else if (strcmp(lg->name, "tls+unix") == 0) {
		/* A path names no host: the client says which name to check. */
		setf(listen, sizeof(listen), "tls+unix://%s/tls.sock", tmp_dir);
		suffix = "?servername=localhost";
	} else if (strcmp(lg->name, "tls+tcp") == 0) {
		setf(listen, sizeof(listen), "tls+tcp://127.0.0.1:0");
	} else {
		setf(listen, sizeof(listen), "tcp://127.0.0.1:0");
	}
	local_exchange(res, ctx, listen, suffix, bytes);
	conduit_ctx_free(ctx);
}

#ifdef CONDUIT_HAVE_LWIP
/* One lwIP stack per process: both lwIP legs share this rig. */
static struct {
	conduit_lwip *st;
	conduit_lwip_netif *a, *b;
	conduit_ctx *ctx;
	bool up;
} lw;

static int lwip_up(char *why, size_t whylen)
{
	static const struct conduit_lwip_netif_config ca = {.ipv4 =
	                                                        "10.0.0.1/24"};
	static const struct conduit_lwip_netif_config cb = {.ipv4 =
	                                                        "10.0.0.2/24"};
	if (lw.up)
		return 0;
	if (conduit_lwip_stack(&lw.st) != CONDUIT_OK) {
		setf(why, whylen, "no lwIP stack");
		return -1;
	}
	if (conduit_lwip_netif_wire_pair(&lw.a, &lw.b, lw.st, &ca, &cb, NULL) !=
	    CONDUIT_OK) {
		setf(why, whylen, "wire: %s", conduit_lwip_error(lw.st));
		conduit_lwip_release(lw.st);
		lw.st = NULL;
		return -1;
	}
	if (conduit_ctx_new(&lw.ctx) != CONDUIT_OK ||
	    conduit_ctx_use_lwip(lw.ctx, lw.st) != CONDUIT_OK) {
		setf(why, whylen, "context on lwIP: %s",
		     lw.ctx ? conduit_ctx_error(lw.ctx) : "out of memory");
		conduit_ctx_free(lw.ctx);
		lw.ctx = NULL;
		conduit_lwip_netif_free(lw.a);
		conduit_lwip_netif_free(lw.b);
		conduit_lwip_release(lw.st);
		lw.st = NULL;
		return -1;
	}
#ifdef CONDUIT_HAVE_TLS
	if (creds.made && ctx_use_creds(lw.ctx, true, true, why, whylen) < 0) {
		conduit_ctx_free(lw.ctx);
		lw.ctx = NULL;
		conduit_lwip_netif_free(lw.a);
		conduit_lwip_netif_free(lw.b);
		conduit_lwip_release(lw.st);
		lw.st = NULL;
		return -1;
	}
#endif
	lw.up = true;
	return 0;
}

static void lwip_down(void)
{
	if (!lw.up)
		return;
	/* Let the closing handshakes finish (bounded) before the wire
	 * goes, so no connection is reset on the way out. */
	for (int i = 0; i < 50; i++) {
		struct conduit_lwip_stats s;
		conduit_lwip_stats(lw.st, &s);
		if (s.lwip_active == 0 && s.frames == 0)
			break;
		size_t n = 0;
		conduit_poll(lw.ctx, NULL, 0, 10, &n);
	}
	conduit_ctx_free(lw.ctx);
	conduit_lwip_netif_free(lw.a);
	conduit_lwip_netif_free(lw.b);
	conduit_lwip_release(lw.st);
	memset(&lw, 0, sizeof(lw));
}
#endif

static void lwip_leg(struct result *res, const struct leg *lg, uint64_t bytes)
{
#ifdef CONDUIT_HAVE_LWIP
	if (lwip_up(res->why, sizeof(res->why)) < 0) {
		res->out = O_FAIL;
		setf(res->phase, sizeof(res->phase), "setup");
		return;
	}
	local_exchange(res, lw.ctx,
	               lg->tls ? "tls+tcp://10.0.0.2:7443"
	                       : "tcp://10.0.0.2:7000",
	               "", bytes);
	setf(res->note_label, sizeof(res->note_label), "network");
	setf(res->note, sizeof(res->note),
	     "netifs 10.0.0.1 and 10.0.0.2 of one lwIP stack, frames on an "
	     "in-memory wire");
#else
	(void)res;
	(void)lg;
	(void)bytes;
#endif
}

/* ------------------------------------------------------------------ */
/* vchan legs: two processes, two emulated domains                      */

static const struct leg *leg_named(const char *name)
{
	for (size_t i = 0; i < NLEGS; i++)
		if (strcmp(legs[i].name, name) == 0)
			return &legs[i];
	return NULL;
}

/* Reads lines from a child's output with a deadline. */
struct lines {
	int fd;
	char buf[8192];
	size_t len;
	bool eof;
};

/* 1 a line in out (newline removed), 0 end of file, -1 deadline passed. */
static int next_line(struct lines *lr, char *out, size_t cap, uint64_t deadline)
{
	for (;;) {
		char *nl = memchr(lr->buf, '\n', lr->len);
		if (nl != NULL || (lr->eof && lr->len > 0) ||
		    lr->len == sizeof(lr->buf)) {
			size_t n =
			    nl != NULL ? (size_t)(nl - lr->buf) : lr->len;
			size_t take = n < cap - 1 ? n : cap - 1;
			memcpy(out, lr->buf, take);
			out[take] = '\0';
			size_t drop = nl != NULL ? n + 1 : n;
			memmove(lr->buf, lr->buf + drop, lr->len - drop);
			lr->len -= drop;
			return 1;
		}
		if (lr->eof)
			return 0;
		uint64_t t = tool_now_ms();
		if (t >= deadline || stop_sig)
			return -1;
		struct pollfd pfd = {.fd = lr->fd, .events = POLLIN};
		uint64_t wait = deadline - t;
		int r = poll(&pfd, 1, wait > 100 ? 100 : (int)wait);
		if (r < 0 && errno != EINTR)
			return -1;
		if (r <= 0)
			continue;
		ssize_t got =
		    read(lr->fd, lr->buf + lr->len, sizeof(lr->buf) - lr->len);
		if (got > 0)
			lr->len += (size_t)got;
		else if (got == 0 || (errno != EINTR && errno != EAGAIN))
			lr->eof = true;
	}
}

struct child {
	pid_t pid;
	int in;
	struct lines out;
	int status;
	bool reaped;
};

static char *xstrcat3(const char *a, const char *b, const char *c)
{
	size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
	char *s = malloc(la + lb + lc + 1);
	if (s != NULL) {
		memcpy(s, a, la);
		memcpy(s + la, b, lb);
		memcpy(s + la + lb, c, lc + 1);
	}
	return s;
}

/* The environment of a domain: ours, with the emulation first on the
 * library path and the emulated host and domain id set. */
static char **child_env(const char *emu, const char *dir, unsigned domid)
{
	size_t n = 0;
	while (environ[n] != NULL)
		n++;
	char **env = calloc(n + 4, sizeof(char *));
	if (env == NULL)
		return NULL;
	size_t k = 0;
	const char *old = getenv("LD_LIBRARY_PATH");
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "LD_LIBRARY_PATH=", 16) != 0 &&
		    strncmp(environ[i], "CONDUIT_XEN_DIR=", 16) != 0 &&
		    strncmp(environ[i], "CONDUIT_XEN_DOMID=", 18) != 0)
			env[k++] = environ[i];
	char id[16];
	setf(id, sizeof(id), "%u", domid);
	char *lib = old != NULL && old[0] != '\0' ? xstrcat3(emu, ":", old)
	                                          : xstrcat3(emu, "", "");
	char *lp = lib ? xstrcat3("LD_LIBRARY_PATH=", lib, "") : NULL;
	free(lib);
	char *xd = xstrcat3("CONDUIT_XEN_DIR=", dir, "");
	char *xi = xstrcat3("CONDUIT_XEN_DOMID=", id, "");
	if (lp == NULL || xd == NULL || xi == NULL) {
		free(lp);
		free(xd);
		free(xi);
		free(env);
		return NULL;
	}
	env[k++] = lp;
	env[k++] = xd;
	env[k++] = xi;
	env[k] = NULL;
	return env;
}

static void free_env(char **env)
{
	if (env == NULL)
		return;
	/* Only the last three strings are ours. */
	size_t n = 0;
	while (env[n] != NULL)
		n++;
	for (size_t i = n >= 3 ? n - 3 : 0; i < n; i++)
		free(env[i]);
	free(env);
}

/* Run this program again as one domain of a vchan leg. */
static int spawn_peer(struct child *c, const char *role, const struct leg *lg,
                      uint64_t bytes, const char *dir, unsigned domid,
                      const char *emu, char *why, size_t whylen)
{
	memset(c, 0, sizeof(*c));
	c->pid = -1;
	c->in = c->out.fd = -1;
	int pin[2], pout[2];
	if (pipe2(pin, O_CLOEXEC) < 0) {
		setf(why, whylen, "pipe: %s", strerror(errno));
		return -1;
	}
	if (pipe2(pout, O_CLOEXEC) < 0) {
		setf(why, whylen, "pipe: %s", strerror(errno));
		close(pin[0]);
		close(pin[1]);
		return -1;
	}
	char nbytes[32];
	setf(nbytes, sizeof(nbytes), "%llu", (unsigned long long)bytes);
	char *argv[] = {"conduit",        "demo", "--peer", (char *)role,
	                (char *)lg->name, nbytes, NULL};
	char **env = child_env(emu, dir, domid);
	pid_t parent = getpid();
	pid_t pid = env != NULL ? fork() : -1;
	if (pid == 0) {
		/* Die with the demo, whatever happens to it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		signal(SIGPIPE, SIG_DFL);
		if (dup2(pin[0], 0) < 0 || dup2(pout[1], 1) < 0 ||
		    chdir(dir) < 0)
			_exit(127);
		execve("/proc/self/exe", argv, env);
		static const char m[] =
		    "conduit demo: cannot run /proc/self/exe "
		    "again for a vchan domain\n";
		if (write(2, m, sizeof(m) - 1) < 0)
			_exit(127);
		_exit(127);
	}
	int err = errno;
	free_env(env);
	close(pin[0]);
	close(pout[1]);
	if (pid < 0) {
		setf(why, whylen, "fork: %s",
		     env == NULL ? "out of memory" : strerror(err));
		close(pin[1]);
		close(pout[0]);
		return -1;
	}
	c->pid = pid;
	c->in = pin[1];
	c->out.fd = pout[0];
	return 0;
}

/* Reap c, killing it after the deadline.  Returns its wait status. */
static int reap(struct child *c, uint64_t deadline)
{
	if (c->pid <= 0 || c->reaped)
		return c->status;
	for (;;) {
		int st;
		pid_t r = waitpid(c->pid, &st, WNOHANG);
		if (r == c->pid) {
			c->status = st;
			break;
		}
		if (r < 0 && errno != EINTR) {
			c->status = -1;
			break;
		}
		if (tool_now_ms() >= deadline || stop_sig) {
			kill(c->pid, SIGKILL);
			while (waitpid(c->pid, &st, 0) < 0 && errno == EINTR)
				;
			c->status = st;
			break;
		}
		nap_ms(2);
	}
	c->reaped = true;
	if (c->in >= 0)
		close(c->in);
	if (c->out.fd >= 0)
		close(c->out.fd);
	c->in = c->out.fd = -1;
	return c->status;
}

static void describe_exit(char *buf, size_t len, const char *who, int st)
{
	if (st == -1)
		setf(buf, len, "the %s could not be waited for", who);
	else if (WIFSIGNALED(st))
		setf(buf, len, "the %s died of signal %d (%s)", who,
		     WTERMSIG(st), strsignal(WTERMSIG(st)));
	else if (WEXITSTATUS(st) == 127)
		setf(buf, len, "the %s could not be started", who);
	else
		setf(buf, len, "the %s exited with status %d", who,
		     WEXITSTATUS(st));
}

/* Send a domain its TLS material: "name length\n" and the bytes. */
static void send_creds(struct child *c, bool server)
{
	char blob[16384];
	size_t len = 0;
	const char *names[3] = {"ca", "cert", "key"};
	const char *vals[3] = {creds.ca, server ? creds.cert : "",
	                       server ? creds.key : ""};
	for (int i = 0; i < 3 && creds.made; i++) {
		size_t vl = strlen(vals[i]);
		int w = snprintf(blob + len, sizeof(blob) - len, "%s %zu\n",
		                 names[i], vl);
		if (w < 0 || (size_t)w + vl >= sizeof(blob) - len)
			break;
		len += (size_t)w;
		memcpy(blob + len, vals[i], vl);
		len += vl;
	}
	/* Less than a pipe's buffer: this never blocks. */
	size_t off = 0;
	while (off < len) {
		ssize_t w = write(c->in, blob + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	close(c->in);
	c->in = -1;
}

/* A "fail PHASE\tMESSAGE" line into res, as said by who. */
static void take_fail(struct result *res, const char *line, const char *who)
{
	const char *tab = strchr(line, '\t');
	if (tab == NULL) {
		setf(res->phase, sizeof(res->phase), "%s", who);
		setf(res->why, sizeof(res->why), "%s", line);
		return;
	}
	setf(res->phase, sizeof(res->phase), "%s %.*s", who, (int)(tab - line),
	     line);
	setf(res->why, sizeof(res->why), "%s", tab + 1);
}

static void vchan_leg(struct result *res, const struct leg *lg, uint64_t bytes)
{
	char dir[PATH_MAX];
	struct child srv = {.pid = -1, .in = -1, .out = {.fd = -1}};
	struct child cli = {.pid = -1, .in = -1, .out = {.fd = -1}};
	char line[2048];
	bool served = false, got_result = false;
	/* Children stop themselves after STALL_MS without progress; this
	 * is the backstop should one hang, allowing 1 MiB/s. */
	uint64_t budget = 3 * (uint64_t)STALL_MS + bytes / 1049;

	setf(res->uri, sizeof(res->uri), "%s", lg->connect);
	setf(res->note_label, sizeof(res->note_label), "domains");
	setf(res->note, sizeof(res->note),
	     "server: domain 1, client: domain 2, two processes on the Xen "
	     "emulation");
	res->out = O_FAIL;
	setf(res->phase, sizeof(res->phase), "setup");

	/* The emulated host: grant pages and XenStore are files, so on a
	 * RAM file system when there is one, as Xen's are memory (on a
	 * disk, connecting is several times slower). */
	struct stat shm;
	int made;
	if (stat("/dev/shm", &shm) == 0 && S_ISDIR(shm.st_mode) &&
	    access("/dev/shm", W_OK | X_OK) == 0) {
		setf(dir, sizeof(dir), "/dev/shm/conduit-demo-%s-XXXXXX",
		     lg->name);
		made = mkdtemp(dir) != NULL ? 0 : -1;
	} else {
		setf(dir, sizeof(dir), "%s/xen-%s", tmp_dir, lg->name);
		made = mkdir(dir, 0700);
	}
	if (made < 0) {
		setf(res->why, sizeof(res->why), "mkdir %s: %s", dir,
		     strerror(errno));
		return;
	}
	if (strcmp(lg->name, "rules") == 0) {
		char path[PATH_MAX + 16];
		setf(path, sizeof(path), "%s/" RULES_FILE, dir);
		FILE *f = fopen(path, "w");
		bool ok = f != NULL && fputs(RULES_TEXT, f) >= 0;
		if (f != NULL && fclose(f) != 0)
			ok = false;
		if (!ok) {
			setf(res->why, sizeof(res->why), "%s: %s", path,
			     strerror(errno));
			goto out;
		}
		char rules[80];
		setf(rules, sizeof(rules), "%s", RULES_TEXT);
		rules[strcspn(rules, "\n")] = '\0';
		setf(res->note_label, sizeof(res->note_label), "rules");
		setf(res->note, sizeof(res->note), RULES_FILE ": %s", rules);
	}
	const char *emu = tool_xen_emulation_dir();
	char probe[PATH_MAX + 32];
	setf(probe, sizeof(probe), "%s/libxengnttab.so.1", emu);
	if (emu[0] == '\0' || access(probe, R_OK) != 0) {
		setf(res->why, sizeof(res->why),
		     "the Xen emulation is not in \"%s\" (build the xenemu "
		     "target, or set CONDUIT_XEN_EMULATION to its directory)",
		     emu);
		goto out;
	}

	setf(res->phase, sizeof(res->phase), "server start");
	if (spawn_peer(&srv, "server", lg, bytes, dir, 1, emu, res->why,
	               sizeof(res->why)) < 0)
		goto out;
	send_creds(&srv, true);
	uint64_t deadline = tool_now_ms() + (uint64_t)STALL_MS;
	for (;;) {
		int r = next_line(&srv.out, line, sizeof(line), deadline);
		if (r < 0) {
			if (stop_sig)
				setf(res->why, sizeof(res->why), "interrupted");
			else
				setf(res->why, sizeof(res->why),
				     "timed out after %d s waiting for the "
				     "server to listen",
				     STALL_MS / 1000);
			goto out;
		}
		if (r == 0) {
			describe_exit(res->why, sizeof(res->why), "server",
			              reap(&srv, tool_now_ms() + 2000));
			goto out;
		}
		if (strcmp(line, "ready") == 0)
			break;
		if (strncmp(line, "fail ", 5) == 0) {
			take_fail(res, line + 5, "server");
			goto out;
		}
	}

	setf(res->phase, sizeof(res->phase), "client start");
	if (spawn_peer(&cli, "client", lg, bytes, dir, 2, emu, res->why,
	               sizeof(res->why)) < 0)
		goto out;
	send_creds(&cli, false);
	res->why[0] = '\0';
	deadline = tool_now_ms() + budget;
	for (int r;
	     (r = next_line(&cli.out, line, sizeof(line), deadline)) != 0;) {
		if (r < 0) {
			setf(res->phase, sizeof(res->phase), "client");
			if (stop_sig)
				setf(res->why, sizeof(res->why), "interrupted");
			else
				setf(res->why, sizeof(res->why),
				     "timed out after %llu s waiting for the "
				     "client",
				     (unsigned long long)(budget / 1000));
			goto out;
		}
		char *v = strchr(line, ' ');
		v = v != NULL ? v + 1 : line + strlen(line);
		if (strncmp(line, "uri ", 4) == 0)
			setf(res->uri, sizeof(res->uri), "%s", v);
		else if (strncmp(line, "explain ", 8) == 0)
			setf(res->explain, sizeof(res->explain), "%s", v);
		else if (strncmp(line, "endpoint ", 9) == 0)
			setf(res->endpoint, sizeof(res->endpoint), "%s", v);
		else if (strncmp(line, "tls ", 4) == 0)
			setf(res->tls, sizeof(res->tls), "%s", v);
		else if (strncmp(line, "fail ", 5) == 0)
			take_fail(res, v, "client");
		else if (strncmp(line, "result ", 7) == 0) {
			unsigned long long b = 0;
			got_result = sscanf(v, "%llu %lf %lf %d %lf", &b,
			                    &res->secs, &res->rtt_us,
			                    &res->rtt_n, &res->setup_ms) == 5;
			res->bytes = b;
		}
	}
	int cst = reap(&cli, tool_now_ms() + 2000);

	/* The server says how it ended once the client is done: at once
	 * after a good exchange; after a failed one it may be waiting for a
	 * client that is gone, so it gets a moment to report, then stops. */
	deadline = tool_now_ms() +
	           (got_result && cst == 0 ? (uint64_t)STALL_MS : 1000u * SLOW);
	char srv_fail[sizeof(line)] = "";
	for (int r;
	     (r = next_line(&srv.out, line, sizeof(line), deadline)) > 0;) {
		if (strncmp(line, "served ", 7) == 0)
			served = true;
		else if (strncmp(line, "fail ", 5) == 0)
			setf(srv_fail, sizeof(srv_fail), "%s", line + 5);
	}
	int sst = reap(&srv, tool_now_ms() + 2000);

	if (got_result && served && cst == 0 && sst == 0) {
		res->out = O_PASS;
		res->phase[0] = res->why[0] = '\0';
		goto out;
	}
	if (res->why[0] == '\0' && srv_fail[0] != '\0') {
		take_fail(res, srv_fail, "server");
	} else if (res->why[0] != '\0' && srv_fail[0] != '\0') {
		size_t l = strlen(res->why);
		const char *tab = strchr(srv_fail, '\t');
		setf(res->why + l, sizeof(res->why) - l, " (server: %s)",
		     tab != NULL ? tab + 1 : srv_fail);
	} else if (res->why[0] == '\0') {
		bool cli_bad = cst != 0;
		setf(res->phase, sizeof(res->phase), "%s",
		     cli_bad ? "client exit" : "server exit");
		describe_exit(res->why, sizeof(res->why),
		              cli_bad ? "client" : "server",
		              cli_bad ? cst : sst);
	}
out:
	reap(&cli, tool_now_ms() + 1000);
	reap(&srv, tool_now_ms() + 1000);
	tool_rmtree(dir);
}

/* ------------------------------------------------------------------ */
/* The children (hidden mode: conduit demo --peer ROLE LEG BYTES)      */

/* Read the TLS material sent on standard input. */
static int read_creds(char *why, size_t whylen)
{
	static char blob[16384];
	size_t len = 0;
	for (;;) {
		ssize_t r = read(0, blob + len, sizeof(blob) - 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
		if (len == sizeof(blob) - 1)
			break;
	}
	blob[len] = '\0';
	const char *p = blob, *end = blob + len;
	while (p < end) {
		char name[16];
		size_t vl = 0;
		int used = 0;
		if (sscanf(p, "%15s %zu\n%n", name, &vl, &used) != 2 ||
		    used <= 0 || vl >= sizeof(creds.ca) ||
		    vl > (size_t)(end - p - used)) {
			setf(why, whylen,
			     "garbled TLS material on standard input");
			return -1;
		}
		p += used;
		char *dst = strcmp(name, "ca") == 0     ? creds.ca
		            : strcmp(name, "cert") == 0 ? creds.cert
		            : strcmp(name, "key") == 0  ? creds.key
		                                        : NULL;
		if (dst != NULL) {
			memcpy(dst, p, vl);
			dst[vl] = '\0';
			creds.made = true;
		}
		p += vl;
	}
	return 0;
}

static void say(const char *key, const char *value)
{
	char v[1300];
	setf(v, sizeof(v), "%s", value);
	one_line(v);
	printf("%s%s%s\n", key, v[0] != '\0' ? " " : "", v);
	fflush(stdout);
}

static void say_fail(const char *phase, const char *why)
{
	char v[700];
	setf(v, sizeof(v), "%s", why);
	one_line(v);
	printf("fail %s\t%s\n", phase, v);
	fflush(stdout);
}

static int peer_main(int argc, char **argv)
{
	if (argc != 5 || (strcmp(argv[2], "server") != 0 &&
	                  strcmp(argv[2], "client") != 0)) {
		fprintf(stderr,
		        "conduit demo: --peer is used by the demo itself "
		        "(--peer server|client LEG BYTES)\n");
		return 2;
	}
	bool server = strcmp(argv[2], "server") == 0;
	const struct leg *lg = leg_named(argv[3]);
	char *end = NULL;
	errno = 0;
	unsigned long long bytes = strtoull(argv[4], &end, 10);
	if (lg == NULL || lg->kind != K_VCHAN || errno != 0 || *end != '\0' ||
	    getenv("CONDUIT_XEN_DIR") == NULL) {
		fprintf(stderr,
		        "conduit demo: --peer: bad leg or byte count, or "
		        "CONDUIT_XEN_DIR unset\n");
		return 2;
	}
	char why[600];
	/* Only the emulation exports this: the real libraries would wait
	 * for a hypervisor that is not there. */
	if (dlsym(RTLD_DEFAULT, "conduit_xen_emulation") == NULL) {
		say_fail("setup", "the Xen emulation is not loaded (it must "
		                  "come first on LD_LIBRARY_PATH)");
		return 1;
	}
	if (read_creds(why, sizeof(why)) < 0) {
		say_fail("setup", why);
		return 1;
	}
	conduit_ctx *ctx = NULL;
	if (conduit_ctx_new(&ctx) != CONDUIT_OK) {
		say_fail("setup", "out of memory");
		return 1;
	}
#ifdef CONDUIT_HAVE_TLS
	/* Both sides trust the demo CA: no leg ever needs the system's CA
	 * bundle. */
	if (lg->tls && (!creds.made || ctx_use_creds(ctx, true, server, why,
	                                             sizeof(why)) < 0)) {
		say_fail("setup", creds.made ? why : "no TLS material given");
		conduit_ctx_free(ctx);
		return 1;
	}
#endif
	struct peer p;
	int status = 1;
	conduit_listener *l = NULL;
	if (peer_init(&p, server, bytes) < 0) {
		say_fail("setup", p.why);
		goto out;
	}
	struct run r = {.ctx = ctx};
	if (server) {
		if (conduit_listen(&l, ctx, lg->listen) != CONDUIT_OK) {
			say_fail("listen", conduit_ctx_error(ctx));
			goto out;
		}
		say("ready", "");
		r.l = l;
		r.srv = &p;
		run_loop(&r);
		if (p.st == ST_DONE) {
			char n[32];
			setf(n, sizeof(n), "%llu", (unsigned long long)p.moved);
			say("served", n);
			status = 0;
		} else {
			say_fail(step_name(p.failed_in), p.why);
		}
		goto out;
	}
	struct result res;
	memset(&res, 0, sizeof(res));
	if (strcmp(lg->name, "rules") == 0 &&
	    conduit_ctx_load_rules(ctx, RULES_FILE) != CONDUIT_OK) {
		say_fail("rules", conduit_ctx_error(ctx));
		goto out;
	}
	int rc = client_start(&res, &p, ctx, lg->connect);
	say("uri", res.uri);
	say("explain", res.explain);
	if (res.endpoint[0] != '\0')
		say("endpoint", res.endpoint);
	if (rc < 0) {
		say_fail(res.phase + 7 /* "client " */, res.why);
		goto out;
	}
	r.cli = &p;
	run_loop(&r);
	fill_result(&res, &p, NULL);
	if (res.tls[0] != '\0')
		say("tls", res.tls);
	if (res.out == O_PASS) {
		printf("result %llu %.6f %.3f %d %.3f\n",
		       (unsigned long long)res.bytes, res.secs, res.rtt_us,
		       res.rtt_n, res.setup_ms);
		fflush(stdout);
		status = 0;
	} else {
		say_fail(step_name(p.failed_in), p.why);
	}
out:
	peer_free(&p);
	conduit_listener_free(l);
	conduit_ctx_free(ctx);
	return status;
}

/* ------------------------------------------------------------------ */
/* Output                                                              */

static bool colour;

#define C_RESET  "\033[0m"
#define C_BOLD   "\033[1m"
#define C_RED    "\033[1;31m"
#define C_GREEN  "\033[32m"
#define C_YELLOW "\033[33m"
#define C_DIM    "\033[2m"

static const char *co(const char *code)
{
	return colour ? code : "";
}

/* "  label     text", text wrapped at spaces to the terminal's 80
 * columns under its first column. */
static void field(const char *label, const char *text)
{
	printf("  %-*s", INDENT - 2, label);
	size_t col = INDENT;
	const char *s = text;
	bool first = true;
	while (*s != '\0') {
		while (*s == ' ')
			s++;
		size_t w = strcspn(s, " ");
		if (w == 0)
			break;
		if (!first && col + 1 + w > WIDTH) {
			printf("\n%*s", INDENT, "");
			col = INDENT;
			first = true;
		}
		if (!first) {
			putchar(' ');
			col++;
		}
		printf("%.*s", (int)w, s);
		col += w;
		s += w;
		first = false;
	}
	putchar('\n');
}

static void human_bytes(char *buf, size_t len, uint64_t b)
{
	if (b >= MIB)
		setf(buf, len, "%.2f MiB", (double)b / MIB);
	else if (b >= KIB)
		setf(buf, len, "%.1f KiB", (double)b / KIB);
	else
		setf(buf, len, "%llu B", (unsigned long long)b);
}

static void print_leg(const struct leg *lg, const struct result *res)
{
	char t[1500];
	if (res->out == O_NOT_BUILT) {
		setf(t, sizeof(t), "%snot built (%s)%s", co(C_YELLOW),
		     lg->missing, co(C_RESET));
		field("result", t);
		return;
	}
	if (res->uri[0] != '\0')
		field("uri", res->uri);
	if (res->explain[0] != '\0' || res->endpoint[0] != '\0') {
		setf(t, sizeof(t), "%s => %s", res->explain,
		     res->endpoint[0] ? res->endpoint : "?");
		field("resolved", t);
	}
	if (res->note[0] != '\0')
		field(res->note_label, res->note);
	if (res->tls[0] != '\0')
		field("tls", res->tls);
	if (res->out == O_PASS) {
		char h[32];
		human_bytes(h, sizeof(h), res->bytes);
		setf(t, sizeof(t),
		     "%llu bytes (%s) sent, every byte checked by the receiver",
		     (unsigned long long)res->bytes, h);
		field("verified", t);
		double mibs =
		    res->secs > 0 ? (double)res->bytes / MIB / res->secs : 0;
		setf(t, sizeof(t),
		     "%.1f MiB/s, up to the receiver's "
		     "acknowledgement",
		     mibs);
		field("speed", t);
		setf(t, sizeof(t),
		     "64 B round trip %.1f us (median of %d); connected in "
		     "%.2f ms",
		     res->rtt_us, res->rtt_n, res->setup_ms);
		field("latency", t);
		setf(t, sizeof(t), "%spass%s", co(C_GREEN), co(C_RESET));
		field("result", t);
	} else {
		setf(t, sizeof(t), "%sFAILED%s in %s: %s", co(C_RED),
		     co(C_RESET), res->phase, res->why);
		field("result", t);
	}
}

static void print_table(const bool *ran, const struct result *res,
                        double total_s)
{
	printf("\n%s%-10s %-9s %12s %9s %9s %9s%s\n", co(C_BOLD), "leg",
	       "result", "verified", "MiB/s", "RTT us", "setup ms",
	       co(C_RESET));
	int pass = 0, fail = 0, absent = 0;
	for (size_t i = 0; i < NLEGS; i++) {
		if (!ran[i])
			continue;
		const struct result *r = &res[i];
		printf("%-10s ", legs[i].name);
		if (r->out == O_PASS) {
			char h[32];
			human_bytes(h, sizeof(h), r->bytes);
			double mibs =
			    r->secs > 0 ? (double)r->bytes / MIB / r->secs : 0;
			printf("%s%-9s%s %12s %9.1f %9.1f %9.2f\n", co(C_GREEN),
			       "pass", co(C_RESET), h, mibs, r->rtt_us,
			       r->setup_ms);
			pass++;
		} else if (r->out == O_NOT_BUILT) {
			printf("%snot built (%s)%s\n", co(C_YELLOW),
			       legs[i].missing, co(C_RESET));
			absent++;
		} else {
			printf("%s%-9s%s %s\n", co(C_RED), "FAILED",
			       co(C_RESET), r->phase);
			fail++;
		}
	}
	printf("\n");
	if (fail == 0)
		printf("%s%d passed%s", co(C_GREEN), pass, co(C_RESET));
	else
		printf("%s%d FAILED%s, %d passed", co(C_RED), fail, co(C_RESET),
		       pass);
	if (absent > 0)
		printf(", %d not built", absent);
	printf(" in %.1f s\n", total_s);
	for (size_t i = 0; i < NLEGS; i++)
		if (ran[i] && res[i].out == O_FAIL) {
			char t[900];
			setf(t, sizeof(t), "%s: %s", res[i].phase, res[i].why);
			/* Reasons wrap like the legs' fields. */
			field(legs[i].name, t);
		}
}

/* ------------------------------------------------------------------ */
/* Options and the run                                                 */

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: conduit demo [--leg NAME]... [--bytes N]\n"
	    "\n"
	    "Shows every backend of this build working end to end, on\n"
	    "loopback and the project's emulations.  For each leg a server\n"
	    "is started and a client reaches it through the resolver; 300\n"
	    "round trips of 64 bytes give the latency, then N bytes of a\n"
	    "pattern are sent and checked byte by byte by the server.\n"
	    "\n"
	    "  --leg NAME   run this leg only (repeatable): unix, tcp,\n"
	    "               tls+tcp, tls+unix, vchan, tls+vchan, lwip,\n"
	    "               tls+lwip, rules\n"
	    "  --bytes N    bytes per leg (default 8M); K, M and G mean\n"
	    "               KiB, MiB and GiB; 1 to 4G\n"
	    "  --help       this text\n"
	    "\n"
	    "Exit status: 0 when every leg built passed (a leg whose backend\n"
	    "is not built is listed, not failed), 1 when one failed, 2 for a\n"
	    "usage error.  Colour only on a terminal, and never with\n"
	    "NO_COLOR set.\n");
}

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt,
                                                             ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "conduit demo: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n(conduit demo --help lists the options)\n");
	va_end(ap);
	return 2;
}

static int parse_bytes(const char *s, uint64_t *out)
{
	if (s[0] < '0' || s[0] > '9')
		return -1;
	char *end = NULL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0)
		return -1;
	uint64_t mul = 1;
	if (*end != '\0') {
		char u = (char)(*end | 0x20);
		mul = u == 'k'   ? KIB
		      : u == 'm' ? MIB
		      : u == 'g' ? 1024 * MIB
		                 : 0;
		end++;
		if (mul == 0 ||
		    (*end != '\0' && strcmp(end, "iB") != 0 &&
		     strcmp(end, "ib") != 0 && strcmp(end, "B") != 0 &&
		     strcmp(end, "b") != 0))
			return -1;
	}
	if (v == 0 || v > MAX_BYTES / mul)
		return -1;
	*out = v * mul;
	return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	memset(o, 0, sizeof(*o));
	o->bytes = DEFAULT_BYTES;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *val = NULL;
		size_t nl = strcspn(a, "=");
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		}
		bool is_leg = strncmp(a, "--leg", nl) == 0 && nl == 5;
		bool is_bytes = strncmp(a, "--bytes", nl) == 0 && nl == 7;
		if (!is_leg && !is_bytes)
			return usage_error("unknown option '%s'", a);
		if (a[nl] == '=')
			val = a + nl + 1;
		else if (i + 1 < argc)
			val = argv[++i];
		else
			return usage_error("%s needs a value", a);
		if (is_bytes) {
			if (parse_bytes(val, &o->bytes) < 0)
				return usage_error(
				    "--bytes: '%s' is not a byte count from 1 "
				    "to 4G (e.g. 65536, 512K, 8M)",
				    val);
			continue;
		}
		const struct leg *lg = leg_named(val);
		if (lg == NULL) {
			fprintf(
			    stderr,
			    "conduit demo: --leg: unknown leg '%s'; the legs "
			    "are:",
			    val);
			for (size_t k = 0; k < NLEGS; k++)
				fprintf(stderr, " %s", legs[k].name);
			fprintf(stderr, "\n");
			return 2;
		}
		o->want[lg - legs] = true;
		o->any = true;
	}
	return -1;
}

static void run_leg(size_t i, struct result *res, uint64_t bytes)
{
	const struct leg *lg = &legs[i];
	memset(res, 0, sizeof(*res));
	if (lg->missing != NULL) {
		res->out = O_NOT_BUILT;
		return;
	}
	if (lg->tls && !creds.made) {
		res->out = O_FAIL;
		setf(res->phase, sizeof(res->phase), "setup");
		setf(res->why, sizeof(res->why),
		     "no demo certificates (see the first leg's message)");
		return;
	}
	switch (lg->kind) {
	case K_HOST:
		host_leg(res, lg, bytes);
		break;
	case K_LWIP:
		lwip_leg(res, lg, bytes);
		break;
	case K_VCHAN:
		vchan_leg(res, lg, bytes);
		break;
	}
}

int conduit_demo(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "--peer") == 0) {
		signal(SIGPIPE, SIG_IGN);
		return peer_main(argc, argv);
	}
	struct opts o;
	int prc = parse_opts(argc, argv, &o);
	if (prc >= 0)
		return prc;
	const char *nc = getenv("NO_COLOR");
	colour = isatty(1) && (nc == NULL || nc[0] == '\0');

	/* A child that dies while we write to it must not kill us. */
	tool_catch_signals(on_signal, 1);

	const char *tmp = getenv("TMPDIR");
	if (tmp == NULL || tmp[0] == '\0')
		tmp = P_tmpdir; /* the system default */
	setf(tmp_dir, sizeof(tmp_dir), "%s/conduit-demo-XXXXXX", tmp);
	if (mkdtemp(tmp_dir) == NULL) {
		fprintf(stderr,
		        "conduit demo: cannot make a directory in %s: %s\n",
		        tmp, strerror(errno));
		return 1;
	}

	uint64_t t0 = tool_now_ms();
	size_t nrun = 0;
	bool ran[NLEGS] = {false};
	for (size_t i = 0; i < NLEGS; i++)
		if (!o.any || o.want[i])
			nrun++;
	char hb[32];
	human_bytes(hb, sizeof(hb), o.bytes);
	printf("%sconduit demo%s: %zu leg%s, %s each, on loopback and "
	       "emulations\n",
	       co(C_BOLD), co(C_RESET), nrun, nrun == 1 ? "" : "s", hb);

	char cred_why[200] = "";
#ifdef CONDUIT_HAVE_TLS
	bool need_tls = false;
	for (size_t i = 0; i < NLEGS; i++)
		if ((!o.any || o.want[i]) && legs[i].tls &&
		    legs[i].missing == NULL)
			need_tls = true;
	if (need_tls) {
		uint64_t c0 = tool_now_ms();
		if (make_creds(&creds, cred_why, sizeof(cred_why)) == 0)
			printf("%sa throwaway CA and server certificate (EC "
			       "P-256) "
			       "made in %llu ms%s\n",
			       co(C_DIM),
			       (unsigned long long)(tool_now_ms() - c0),
			       co(C_RESET));
		else
			printf("%scannot make the demo certificates: %s%s\n",
			       co(C_RED), cred_why, co(C_RESET));
	}
#endif
	static struct result res[NLEGS];
	size_t k = 0;
	for (size_t i = 0; i < NLEGS && !stop_sig; i++) {
		if (o.any && !o.want[i])
			continue;
		printf("\n%s[%zu/%zu] %s%s: %s\n", co(C_BOLD), ++k, nrun,
		       legs[i].name, co(C_RESET), legs[i].title);
		fflush(stdout);
		run_leg(i, &res[i], o.bytes);
		if (res[i].out == O_FAIL && legs[i].tls && !creds.made &&
		    cred_why[0] != '\0')
			setf(res[i].why, sizeof(res[i].why),
			     "no demo certificates: %s", cred_why);
		ran[i] = true;
		print_leg(&legs[i], &res[i]);
		fflush(stdout);
	}
#ifdef CONDUIT_HAVE_LWIP
	lwip_down();
#endif
	tool_rmtree(tmp_dir);
	print_table(ran, res, (double)(tool_now_ms() - t0) / 1000.0);
	fflush(stdout);
	if (stop_sig) {
		fprintf(stderr, "conduit demo: interrupted\n");
		signal((int)stop_sig, SIG_DFL);
		raise((int)stop_sig);
		return 1;
	}
	for (size_t i = 0; i < NLEGS; i++)
		if (ran[i] && res[i].out == O_FAIL)
			return 1;
	return 0;
}
