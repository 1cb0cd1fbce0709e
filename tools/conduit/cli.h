/*
 * cli.h - what the files of the `conduit` command share.
 *
 *   main.c      the context from the options, then the subcommand
 *   options.c   the command line (getopt_long) and the help texts
 *   session.c   the one event loop every subcommand runs in: sessions,
 *               standard input and output, signals
 *   cat.c, listen.c, relay.c, resolve.c
 *               the subcommands
 *   tls_opts.c  the TLS options and --servername
 *   lwip_opts.c --lwip-tap and --lwip-dgram (and the wire between two
 *               processes)
 *   demo*.c     `conduit demo` (demo.h)
 *
 * Only the public API (conduit/conduit.h) is used.
 */
#ifndef CONDUIT_TOOLS_CLI_H
#define CONDUIT_TOOLS_CLI_H

#include <conduit/conduit.h>

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exit statuses, documented in the help text and the README. */
enum {
	EXIT_IO = 1,      /* I/O failure after connecting */
	EXIT_USAGE = 2,   /* bad command line */
	EXIT_RESOLVE = 3, /* bad URI, unknown scheme, name lookup */
	EXIT_CONNECT = 4, /* refused, no such socket, timed out, ... */
};

/* ------------------------------------------------------------------ */
/* The command line (options.c)                                        */

enum cmd { CMD_NONE, CMD_CAT, CMD_LISTEN, CMD_RELAY, CMD_RESOLVE };

struct opts {
	enum cmd cmd;
	const char *args[2];
	int nargs;
	int timeout_ms; /* 0: no limit */
	bool verbose, keep, echo, help, explain;
	const char *rules;      /* --rules FILE */
	const char *lwip_tap;   /* --lwip-tap NAME,ADDR/PREFIX[,GW] */
	const char *lwip_dgram; /* --lwip-dgram PATH,ADDR/PREFIX[,GW] */
	/* TLS: files, the variable holding the key's password, ALPN list */
	const char *ca, *cert, *key, *pass_env, *alpn;
	const char *servername; /* --servername: the name TLS checks */
	int client_auth;        /* CONDUIT_TLS_VERIFY_*, or -1: not given */
	bool insecure;
};

/* The ALPN list as the TLS layer takes it: 1 to 16 names of 1 to 255
 * bytes, separated by commas. */
#define ALPN_MAX 16

/* Options may come before or after the command (`conduit -v cat URI`,
 * `conduit cat URI -v`); "--" ends them.  Returns -1 on success, else an
 * exit status. */
int parse_args(int argc, char **argv, struct opts *o);
/* The help text of command c (CMD_NONE: the command's own). */
const char *usage_for(enum cmd c);

/* ------------------------------------------------------------------ */
/* Messages and statuses (main.c)                                      */

/* One line on stderr, "conduit: " first, written at once so concurrent
 * lines do not mix. */
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A failure before any byte could move: was it the URI's resolution
 * (exit 3) or the connection itself (exit 4)? */
int setup_exit(int rc);

/* ------------------------------------------------------------------ */
/* Sessions and the loop (session.c)                                   */

/* Bytes held per direction; a full buffer stops reading its source. */
#define DIR_CAP (64 * 1024)

/* One side of a session: a flow, or standard input and output. */
struct end {
	conduit_flow *flow; /* NULL: standard input and output */
	bool up;            /* established; data may move */
};

/* Bytes from src to dst through a bounded buffer. */
struct dir {
	struct end *src, *dst;
	uint8_t *buf;
	size_t off, len; /* unsent bytes are buf[off..len) */
	bool eof;        /* src has ended */
	bool done;       /* ...and dst was given everything and the end */
};

struct session {
	struct end end[2];
	size_t nend;
	struct dir dir[2];
	size_t ndir;
	uint64_t idle_at;        /* end the session then (UINT64_MAX: never) */
	uint64_t wake_at;        /* the library wants to be called by then */
	size_t span_lo, span_hi; /* its descriptors in the poll array */
	bool ready;
	/* The failure, if any: status, message, and whether it happened
	 * while connecting (exit 3/4) or after (exit 1). */
	int rc;
	bool in_setup;
	char msg[512];
};

enum mode { MODE_CAT, MODE_STDIO, MODE_ECHO, MODE_RELAY };

struct prog {
	conduit_ctx *ctx;
	const struct opts *o;
	enum mode mode;
	conduit_listener *l;
	conduit_endpoint *target; /* relay: resolved once */
	struct session **s;
	size_t ns, scap, max_sessions;
	bool stdin_eof; /* outlives sessions (listen --keep) */
	bool single;    /* one session, then exit with its status */
	bool accepted;
	struct pollfd *fds;
	size_t nfds, fdcap;
};

/* cat, listen and relay: set up, then run the loop.  Returns the exit
 * status, or 128 + a signal number (re-raised by main). */
int run(conduit_ctx *ctx, const struct opts *o);
struct session *session_new(struct prog *p);
/* Give s its directions: both ways between its two ends, or (echo) its
 * one end to itself.  False when out of memory. */
bool session_join(struct session *s, bool echo);
int session_fail(struct session *s, int rc, bool in_setup, const char *msg);
/* The read end of the self-pipe SIGINT, SIGTERM and SIGHUP write to, or
 * -1 before the loop set it up. */
int signal_fd(void);

/* ------------------------------------------------------------------ */
/* The subcommands: set p up (cat.c, listen.c, relay.c); 0 to run the   */
/* loop, else the exit status.                                          */

int cat_start(struct prog *p);
int listen_start(struct prog *p);
int relay_start(struct prog *p);
/* Listen on p->o->args[0] and say so (listen.c, for relay too). */
int listener_open(struct prog *p);
int cmd_resolve(conduit_ctx *ctx, const char *uri, bool explain);

/* ------------------------------------------------------------------ */
/* Options that set up the context                                     */

/* Apply the TLS options to ctx.  Returns -1, or the exit status after
 * saying what is wrong (a file, a key, a password: all exit 2). */
int tls_setup(conduit_ctx *ctx, const struct opts *o);
/* Resolve uri (into *ep) and, with --servername, replace the endpoint by
 * the same endpoint with servername=NAME.  Returns 0, or an exit status
 * after saying why. */
int target_endpoint(conduit_ctx *ctx, const struct opts *o, const char *uri,
                    conduit_endpoint **ep);

/* Parse the --lwip-* option, make the stack and its netif, and put ctx
 * on it.  *handle is the stack reference, for lwip_teardown().  Returns 0,
 * or -1 after saying why. */
int lwip_setup(conduit_ctx *ctx, const struct opts *o, void **handle);
/* Before exiting: let lwIP finish its closing handshakes (bounded). */
void lwip_linger(conduit_ctx *ctx, void *handle);
/* After the context is freed: the last reference removes the netif. */
void lwip_teardown(void *handle);
/* The --lwip-dgram rendezvous: its descriptor while the other end of the
 * wire waits to be taken, else -1. */
int wire_fd(void);
/* The loop saw wire_fd() readable: hand the other end over. */
void wire_hand_over(bool verbose);

#endif
