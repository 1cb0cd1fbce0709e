/*
 * tls.c - conduit-bench's TLS: one suite pinned for every variant, the
 * server's certificate made in memory, raw mbedTLS on a raw socket (the
 * tls section's baseline), and the cipher's own ceiling.
 *
 * TLS pins one suite for all three variants (TLS 1.2,
 * ECDHE-ECDSA-AES128-GCM-SHA256, curve P-256), with one EC P-256
 * certificate made in memory at start; every client verifies it and the
 * server name.  Raw mbedTLS and nng are pinned through their
 * configurations (nng's in nng.c); conduit negotiates that suite by
 * itself, which check_suite() verifies on every connection.
 */
#include "certs.h"
#include "sock.h"

#include <conduit/tls.h>

#include <mbedtls/ctr_drbg.h>
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

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

void pin_conf(mbedtls_ssl_config *c)
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

const char *pin_suite_name(void)
{
	return mbedtls_ssl_get_ciphersuite_name(pin_suites[0]);
}

/* Every TLS connection must have negotiated the pinned suite. */
int check_suite(const char *name)
{
	if (name != NULL && strcmp(name, pin_suite_name()) == 0)
		return 0;
	return bench_fail("TLS negotiated %s, not the pinned %s",
	                  name != NULL ? name : "no suite", pin_suite_name());
}

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
		return bench_fail("random generator: %s", mbed_err(r));
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
		return bench_fail("making the test certificate: %s",
		                  mbed_err(r));
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
		return bench_fail("raw mbedTLS configuration: %s", mbed_err(r));
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

/* mbedTLS wants the socket: wait for what it wants.  0, or -1 with the
 * error of r when r is no want. */
static int rt_want(struct rtls *t, int r, const char *what)
{
	if (r == MBEDTLS_ERR_SSL_WANT_READ)
		return raw_wait(t->fd, POLLIN);
	if (r == MBEDTLS_ERR_SSL_WANT_WRITE)
		return raw_wait(t->fd, POLLOUT);
	return bench_fail("mbedtls %s: %s", what, mbed_err(r));
}

/* Wrap a connected socket (taken over, closed on failure) and handshake. */
int rt_open(struct rtls **out, int fd, bool server)
{
	struct rtls *t = calloc(1, sizeof(*t));
	if (t == NULL) {
		close(fd);
		return bench_fail("out of memory");
	}
	t->fd = fd;
	mbedtls_ssl_init(&t->ssl);
	int r = mbedtls_ssl_setup(&t->ssl, server ? &RT.srv : &RT.cli);
	if (r == 0 && !server)
		r = mbedtls_ssl_set_hostname(&t->ssl, TLS_NAME);
	if (r == 0 && !server && RT.offer)
		r = mbedtls_ssl_set_session(&t->ssl, &RT.sess);
	if (r != 0) {
		bench_fail("mbedtls setup: %s", mbed_err(r));
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
	bench_fail("mbedtls handshake: no progress");
fail:
	mbedtls_ssl_free(&t->ssl);
	close(t->fd);
	free(t);
	return -1;
}

int rt_write_all(struct rtls *t, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	size_t done = 0;
	/* Each pass moves at least one byte or waits (bounded). */
	for (size_t pass = 0; done < len; pass++) {
		if (pass > len + 1000)
			return bench_fail("mbedtls write: no progress");
		int r = mbedtls_ssl_write(&t->ssl, p + done, len - done);
		if (r >= 0)
			done += (size_t)r;
		else if (rt_want(t, r, "write") < 0)
			return -1;
	}
	return 0;
}

/* 1 with *got bytes, 0 at the peer's close_notify, -1 on error. */
int rt_read(struct rtls *t, void *buf, size_t cap, size_t *got)
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
			return bench_fail(
			    "mbedtls read: the peer closed without "
			    "a close_notify");
		if (rt_want(t, r, "read") < 0)
			return -1;
	}
	return bench_fail("mbedtls read: no progress");
}

/* close_notify (as conduit's close sends it), then the socket. */
void rt_close(struct rtls *t)
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

int bench_tls_identity(const char **cert_pem, const char **key_pem,
                       const char **why)
{
	if (G.cert_pem[0] == '\0' &&
	    ((!RT.ready && rt_rng_init() < 0) || tls_make_cert() < 0)) {
		G.cert_pem[0] = '\0';
		*why = bench_errmsg;
		return -1;
	}
	*cert_pem = G.cert_pem;
	*key_pem = G.key_pem;
	return 0;
}

/* The certificate, raw mbedTLS's configurations and the client context's
 * trust in the certificate. */
int tls_setup(void)
{
	const char *cert, *key, *why;
	if (bench_tls_identity(&cert, &key, &why) < 0 || rt_setup() < 0)
		return -1;
	int rc = conduit_tls_set_ca_pem(G.ctx, G.cert_pem, strlen(G.cert_pem));
	if (rc != CONDUIT_OK)
		return bench_fail("conduit_tls_set_ca_pem: %s",
		                  bench_cerr(conduit_ctx_error(G.ctx), rc));
	return 0;
}

/* The first connection of a resumed-handshake run is a full handshake:
 * keep its session, to be offered by every connection after it. */
int keep_session(struct sock_link *k)
{
	if (k->api == API_CONDUIT) {
		conduit_tls_session *ts = NULL;
		int rc = conduit_tls_session_get(k->flow, &ts);
		if (rc == CONDUIT_OK)
			rc = conduit_tls_set_session(G.ctx, ts);
		conduit_tls_session_free(ts);
		if (rc != CONDUIT_OK)
			return bench_fail(
			    "keeping the TLS session: %s",
			    bench_cerr(conduit_ctx_error(G.ctx), rc));
		return 0;
	}
	mbedtls_ssl_session_free(&RT.sess);
	mbedtls_ssl_session_init(&RT.sess);
	int r = mbedtls_ssl_get_session(&k->rt->ssl, &RT.sess);
	if (r != 0)
		return bench_fail("mbedtls_ssl_get_session: %s", mbed_err(r));
	RT.offer = true;
	return 0;
}

bool link_resumed(struct sock_link *k)
{
	if (k->api == API_CONDUIT)
		return conduit_tls_resumed(k->flow) == 1;
	return k->rt != NULL && k->rt->resumed;
}

/* The run is over: no session is offered any more, so that full
 * handshakes stay full. */
void drop_sessions(void)
{
	conduit_tls_clear_sessions(G.ctx);
	RT.offer = false;
	mbedtls_ssl_session_free(&RT.sess);
	mbedtls_ssl_session_init(&RT.sess);
}

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

void tls_cleanup(void)
{
	if (RT.ready)
		rt_free();
}

void rt_reseed_server(void)
{
	if (RT.ready)
		mbedtls_ctr_drbg_reseed(&RT.drbg,
		                        (const unsigned char *)"server", 6);
}

void tls_notes(bool quick)
{
	bench_note("TLS: TLSv1.2 %s, curve P-256, an EC P-256\n"
	           "self-signed certificate made at start, verified by every "
	           "client; mbedTLS %s.\nResumed handshakes: the first "
	           "connection's session (a ticket) is offered by\nevery "
	           "later one, which must resume; nng keeps no TLS sessions, "
	           "so it has no\nsuch figure.",
	           pin_suite_name(), MBEDTLS_VERSION_STRING);
	bench_note("TLS ceiling: AES-128-GCM alone, one core, 16 KiB records: "
	           "%.0f MiB/s.\nEach side of a transfer runs it over every "
	           "byte; no TLS on mbedTLS goes faster.",
	           gcm_ceiling(quick));
}

const char *rt_suite(struct rtls *t)
{
	return mbedtls_ssl_get_ciphersuite(&t->ssl);
}

void tls_json(void)
{
	printf("  \"tls\": {\"version\": \"TLSv1.2\", \"suite\": \"%s\", "
	       "\"curve\": \"secp256r1\", \"certificate\": \"EC P-256, "
	       "self-signed, made at start\", \"mbedtls\": \"%s\"},\n",
	       pin_suite_name(), MBEDTLS_VERSION_STRING);
}
