/*
 * demo_local.c - the demo's throwaway TLS material, made in memory, and
 * the legs that run client and server in this process: host sockets and
 * lwIP.
 */
#include "common.h"
#include "demo_int.h"
#ifdef CONDUIT_HAVE_TLS
#include "certs.h"

#include <conduit/tls.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#endif
#ifdef CONDUIT_HAVE_LWIP
#include <conduit/lwip.h>
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Throwaway TLS material, made in memory                              */

struct creds creds;

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
int make_creds(struct creds *c, char *why, size_t whylen)
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
int ctx_use_creds(conduit_ctx *ctx, bool client, bool server, char *why,
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

void host_leg(struct result *res, const struct leg *lg, uint64_t bytes)
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
		goto fail;
	}
#ifdef CONDUIT_HAVE_TLS
	if (creds.made && ctx_use_creds(lw.ctx, true, true, why, whylen) < 0)
		goto fail;
#endif
	lw.up = true;
	return 0;
fail:
	conduit_ctx_free(lw.ctx);
	lw.ctx = NULL;
	conduit_lwip_netif_free(lw.a);
	conduit_lwip_netif_free(lw.b);
	conduit_lwip_release(lw.st);
	lw.st = NULL;
	return -1;
}

void lwip_down(void)
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

void lwip_leg(struct result *res, const struct leg *lg, uint64_t bytes)
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
