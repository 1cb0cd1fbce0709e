/*
 * tlskit.h - helpers shared by the TLS suites (test_tls_*.c); tlskit.c
 * says what they are.
 */
#ifndef CONDUIT_TEST_TLSKIT_H
#define CONDUIT_TEST_TLSKIT_H

#include "flowkit.h"
#include "harness.h"

#include <conduit/conduit.h>

#include <stddef.h>

/* The certificates of this run (see tlskit.c for the list). */
extern struct cd_certs certs;
/* A file in the certificate directory (rotating static buffers). */
const char *cp(const char *name);
/* Fail the test unless the certificates were made. */
void need_certs(void);
/* A context whose identity is name.crt/name.key (NULL: none) and which
 * trusts the test CA. */
conduit_ctx *tls_ctx(const char *name);
/* fmt with its "PORT" replaced by port. */
void with_port(char *buf, size_t len, const char *fmt, int port);

struct pair {
	conduit_ctx *sctx, *cctx;
	conduit_listener *l;
	conduit_flow *c, *s;
	int rc_c, rc_s;
	char uri[512];
};

#define TCP_LISTEN "tls+tcp://127.0.0.1:0"
#define TCP_NAMED  "tls+tcp://127.0.0.1:PORT?servername=localhost"

/* Listen on luri with sctx; connect with cctx to fmt (its "PORT"
 * replaced); accept. */
void pair_open(struct pair *p, conduit_ctx *sctx, conduit_ctx *cctx,
               const char *luri, const char *fmt);
/* Drive both handshakes until both end (or one failed and the other has
 * had a second to notice); the results are in rc_c and rc_s. */
void pair_handshake(struct pair *p);
/* pair_handshake(), and both must succeed. */
void pair_ok(struct pair *p);
void pair_free(struct pair *p);
/* Close and free p's flows, then connect again to fmt (NULL: the same
 * URI) on the same listener and run the handshake. */
void pair_again(struct pair *p, const char *fmt);
/* Read until buf holds want bytes (or a newline when want is 0). */
size_t read_some(conduit_flow *f, char *buf, size_t cap, size_t want);
void send_str(conduit_flow *f, const char *s);
/* A message exchange each way over an established pair. */
void pair_talk(struct pair *p);
/* A server with srv (the default), other and wild. */
conduit_ctx *sni_server(void);

/* A suite's main(): make the certificates, run the tests, clean up. */
int tk_main(const char *name, const struct cd_test *tests, size_t n);

#endif
