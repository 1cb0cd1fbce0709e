/*
 * demo_int.h - what the files of `conduit demo` share.
 *
 *   demo.c          the legs, the options, the run and its output
 *   demo_exchange.c the exchange every leg runs: a client and a server
 *                   state machine, driven by conduit_poll()
 *   demo_local.c    the throwaway TLS material, and the legs that run in
 *                   this process (host sockets, lwIP)
 *   demo_vchan.c    the vchan legs: two processes, two emulated domains,
 *                   and the hidden child mode (--peer)
 */
#ifndef CONDUIT_TOOLS_DEMO_INT_H
#define CONDUIT_TOOLS_DEMO_INT_H

#include <conduit/conduit.h>

#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

#define RULES_FILE "demo.rules"
#define RULES_TEXT "map *.xen vchan://{label}/{scheme}\n"

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

/* The leg of that name, or NULL. */
const struct leg *leg_named(const char *name);

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

/* Set by SIGINT, SIGTERM and SIGHUP; every loop checks it. */
extern volatile sig_atomic_t stop_sig;
/* The run's private temporary directory. */
extern char tmp_dir[PATH_MAX];

void nap_ms(int ms);
__attribute__((format(printf, 3, 4))) void setf(char *buf, size_t len,
                                                const char *fmt, ...);
/* Messages travel on one line between processes. */
void one_line(char *s);

/* ------------------------------------------------------------------ */
/* The exchange (demo_exchange.c)                                      */

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

const char *step_name(enum step s);

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

/* One leg's loop: a client, a server (accepting on l), or both. */
struct run {
	conduit_ctx *ctx;
	conduit_listener *l;
	struct peer *cli, *srv;
};

int peer_init(struct peer *p, bool server, uint64_t total);
void peer_free(struct peer *p);
void run_loop(struct run *r);
void fill_result(struct result *res, struct peer *cli, struct peer *srv);
int client_start(struct result *res, struct peer *p, conduit_ctx *ctx,
                 const char *uri);

/* ------------------------------------------------------------------ */
/* TLS material and the legs (demo_local.c, demo_vchan.c)              */

struct creds {
	char ca[4096];
	char cert[4096];
	char key[4096];
	bool made;
};

extern struct creds creds;
#ifdef CONDUIT_HAVE_TLS
/* A CA and a server certificate it signed; 0 or an mbedTLS error. */
int make_creds(struct creds *c, char *why, size_t whylen);
/* The context trusts the demo CA (client) and/or serves its certificate. */
int ctx_use_creds(conduit_ctx *ctx, bool client, bool server, char *why,
                  size_t whylen);
#endif

void host_leg(struct result *res, const struct leg *lg, uint64_t bytes);
void lwip_leg(struct result *res, const struct leg *lg, uint64_t bytes);
#ifdef CONDUIT_HAVE_LWIP
void lwip_down(void);
#endif
void vchan_leg(struct result *res, const struct leg *lg, uint64_t bytes);
/* The hidden child mode: conduit demo --peer ROLE LEG BYTES. */
int peer_main(int argc, char **argv);

#endif
