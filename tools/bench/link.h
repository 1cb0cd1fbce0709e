/*
 * link.h - the byte-stream sections' one link layer (the host-socket
 * sections and the vchan section).
 *
 * A link is one end of a connection of any variant (conduit, a raw
 * baseline, nng) behind three calls; the loops every figure runs over it,
 * a pattern sent and checked, round trips echoed, are written once here,
 * so every variant of every transport runs the same code around its own
 * calls.  The server side of a figure runs in a forked process that
 * reports through a pipe; that too is here.
 */
#ifndef CONDUIT_TOOLS_BENCH_LINK_H
#define CONDUIT_TOOLS_BENCH_LINK_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The receiver's read size and the round trip's size, the same for every
 * variant. */
#define LINK_RBUF (64 * 1024)
#define LINK_PING 64

struct bench_link;

/* What a variant provides.  Errors go to bench_fail(). */
struct bench_link_ops {
	/* 0, or -1 */
	int (*write_all)(struct bench_link *k, const void *buf, size_t len);
	/* 1 with *got bytes, 0 at end of stream, -1 on error */
	int (*read)(struct bench_link *k, void *buf, size_t cap, size_t *got);
	void (*close)(struct bench_link *k);
};

struct bench_link {
	const struct bench_link_ops *ops;
	/* Messages, not a stream (nng): no end of stream to wait for. */
	bool messages;
};

/* A server's report to its client, through a pipe; smaller than
 * PIPE_BUF, so written in one piece. */
enum { MSG_READY = 1, MSG_DONE, MSG_ERROR };
struct bench_report {
	int32_t kind;
	int32_t port;    /* READY: a TCP listener's port */
	uint64_t count;  /* bytes received or echoed, connections accepted */
	uint64_t bad_at; /* first wrong byte, UINT64_MAX if none */
	char text[512];  /* READY: the listener's URI; ERROR: why */
};

enum link_role { ROLE_SINK, ROLE_ECHO, ROLE_ACCEPT };

/* A forked server (below). */
struct bench_child {
	pid_t pid;
	int rfd;
};

/* The server's side on the accepted link k, which it closes: receive
 * amount bytes of the pattern, check them and answer one byte, then wait
 * for the end of stream (ROLE_SINK); or echo until the end of stream, or
 * amount bytes of messages (ROLE_ECHO).  Counts go to rep. */
int link_serve(struct bench_link *k, enum link_role role, uint64_t amount,
               struct bench_report *rep);

/* The client's side: total bytes of the pattern in writes of ws, then the
 * receiver's one-byte answer; *ns from the first write to the answer. */
int link_send(struct bench_link *k, size_t ws, uint64_t total, uint64_t *ns);
/* warm + n round trips of LINK_PING bytes, each checked; the last n
 * times in ns go to samples. */
int link_pings(struct bench_link *k, unsigned warm, unsigned n,
               uint64_t *samples);
/* A client's run of a byte-stream figure against its server. */
struct link_run {
	enum link_role role; /* ROLE_SINK: throughput; ROLE_ECHO: round trips */
	size_t ws;           /* sink: the write size */
	uint64_t total;      /* sink: bytes; echo: (warm + n) * LINK_PING */
	unsigned warm, n;    /* echo: round trips */
	uint64_t ns;         /* sink, out: from the first write to the answer */
	uint64_t *samples;   /* echo, out: the last n round trips, in ns */
};
/* With the server started (c) and k connected (NULL: the connect failed,
 * said by bench_fail()): the run, k closed, then the server's report
 * collected and checked. */
int link_client(struct bench_child *c, struct bench_link *k,
                struct link_run *run);

/* The conduit variant's calls, the same on every transport: a flow's
 * conduit_write_all() and conduit_read_wait() within timeout_ms, in the
 * shape of the ops above. */
struct conduit_flow;
int link_flow_write(struct conduit_flow *f, const void *buf, size_t len,
                    int timeout_ms);
int link_flow_read(struct conduit_flow *f, void *buf, size_t cap, size_t *got,
                   int timeout_ms);

/* The server's final report says it saw what was sent. */
int link_check_sink(const struct bench_report *rep, uint64_t total);
/* The server counted want (bytes echoed, connections accepted): else
 * "WHO COUNT WHAT, not WANT". */
int link_check_count(const struct bench_report *rep, uint64_t want,
                     const char *who, const char *what);

/* ------------------------------------------------------------------ */
/* Forked processes                                                    */

/* The server being run, for a signal handler to kill; 0 when none. */
extern volatile sig_atomic_t bench_child_pid;

/* In a forked process that must die with parent: signals back to their
 * defaults, a watchdog, pinned to cpu (-1: not pinned). */
void bench_child_setup(pid_t parent, int cpu);
/* Fork a server: in it, bench_child_setup(cpu), then serve(job, wfd) as
 * its exit status.  Returns once it has reported MSG_READY, in *ready. */
int bench_child_start(struct bench_child *c, int cpu,
                      int (*serve)(const void *job, int wfd), const void *job,
                      struct bench_report *ready);
/* In the server: send a report. */
int bench_child_report(int wfd, const struct bench_report *r);
/* Collect the server's final report and reap it. */
int bench_child_finish(struct bench_child *c, struct bench_report *rep);
/* Something failed on this side: the server may know why (it failed first
 * and closed), so give it a moment to say so, then end it. */
void bench_child_abort(struct bench_child *c);

#endif
