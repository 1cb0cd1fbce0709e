/*
 * flowkit.h - conduit helpers shared by the Check suites: status
 * assertions, contexts, listeners and connected pairs for the test process,
 * and byte-checked stream pumps that forked peers can use too.
 *
 * Check's rule holds here: the helpers marked "peer-safe" never call
 * ck_assert and report through their return value, so a forked peer can
 * use them and hand the result to _exit(); the others assert and belong to
 * the test process only.
 */
#ifndef CONDUIT_TEST_FLOWKIT_H
#define CONDUIT_TEST_FLOWKIT_H

#include "harness.h"

#include <conduit/conduit.h>

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define MiB (1024ull * 1024ull)
/* Buffer size of the stream helpers. */
#define FK_CHUNK (64 * 1024)
/* The longest fk_drive_handshake() waits, before scaling. */
#define FK_HANDSHAKE_MS 30000

/* Fail with both status names, which say more than two numbers. */
#define ck_status(expr, want)                                                  \
	do {                                                                   \
		int got_ = (expr), want_ = (want);                             \
		ck_assert_msg(got_ == want_, "%s: got %s, want %s", #expr,     \
		              conduit_status_name(got_),                       \
		              conduit_status_name(want_));                     \
	} while (0)

/* Peer-safe: whether rc is CONDUIT_WANT_READ or CONDUIT_WANT_WRITE. */
bool fk_is_want(int rc);

/* A new context; fails the test if conduit_ctx_new() does not succeed. */
conduit_ctx *fk_new_ctx(void);

/* A listener on uri; fails the test, naming uri and the reason, if none. */
conduit_listener *fk_listen(conduit_ctx *ctx, const char *uri);

/* A unix listener in a fresh directory made by cd_tmpdir() (dir receives
 * its path, for cd_rmtree()); fails the test if none. */
conduit_listener *fk_unix_listener(conduit_ctx *ctx, char *dir, size_t len);

/* The port l is bound to, read back from its URI; fails unless 1..65535. */
int fk_listener_port(const conduit_listener *l);

/* Connect to uri (NULL: l's own) and accept on l; fails unless both do. */
void fk_pair(conduit_ctx *ctx, conduit_listener *l, const char *uri,
             conduit_flow **client, conduit_flow **server);

/* Send one byte c to s and one s to c; fails unless both arrive intact. */
void fk_exchange(conduit_flow *c, conduit_flow *s);

/* Peer-safe: free flows c and s, then l, then ctx; NULLs are skipped. */
void fk_free_all(conduit_flow *c, conduit_flow *s, conduit_listener *l,
                 conduit_ctx *ctx);

/* Handshake f until done (polling poll_ms each turn, for FK_HANDSHAKE_MS
 * at most); the final status, a want if the time ran out. */
int fk_drive_handshake(conduit_ctx *ctx, conduit_flow *f, int poll_ms);

/* Peer-safe: send stream seed, check its echo to EOF; 0 or a step 1..8. */
int fk_pump_echo(conduit_ctx *ctx, conduit_flow *f, uint32_t seed,
                 uint64_t total, int timeout_ms);

/* Connect to uri, pump stream seed through its echo; fails unless intact. */
void fk_echo_client(conduit_ctx *ctx, const char *uri, uint32_t seed,
                    uint64_t total, int timeout_ms);

/* Peer-safe: echo f until end of stream, then close; 0 or a step 20..23. */
int fk_echo_blocking(conduit_flow *f, int timeout_ms);

/* Fork a peer that accepts one flow on l and echoes it; returns its pid. */
pid_t fk_spawn_echo_server(conduit_listener *l, int accept_ms, int echo_ms);

/* A loopback listener whose accept queue is full, so Linux drops new SYNs
 * and a connect to it stays in progress: a "silent" address. */
struct fk_silent {
	int lfd;
	int port;
	int nclients;
	int clients[32];
};
/* Make one on ipv4:port (port 0: any); returns the port. */
int fk_silent_listen(struct fk_silent *s, const char *ipv4, int port);
void fk_silent_free(struct fk_silent *s);

/* An observer that records every event (the first 32). */
struct fk_events {
	int n;
	enum conduit_phase phase[32];
	int status[32];
	char detail[32][128];
	conduit_flow *flow[32];
};
void fk_record(void *arg, const struct conduit_event *ev);
/* How many events of this phase were recorded. */
int fk_count_phase(const struct fk_events *log, enum conduit_phase p);

/* A conduit_addr from an IPv4 or IPv6 literal. */
struct conduit_addr fk_addr(const char *text);

#endif
