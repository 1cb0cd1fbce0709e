/*
 * test_tls_keys.c - identities: encrypted keys (a password or a
 * callback, every scheme OpenSSL makes), certificates and keys from memory,
 * a listener without a certificate, settings changed under live flows, and
 * certificates chosen by SNI.
 *
 * Certificates are made once per run by the openssl command in a temporary
 * directory (tlskit.c); without openssl every test fails loudly.  Most
 * tests run both ends in this process, non-blocking, driven by
 * conduit_poll(); forked peers report only through their exit status.
 */
#include "flowkit.h"
#include "harness.h"
#include "tlskit.h"

#include <conduit/conduit.h>
#include <conduit/tls.h>

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Configuration                                                       */

/* A file's text into buf, which it must fit (with its NUL). */
static void slurp_into(const char *path, char *buf, size_t size)
{
	const char *s = cd_slurp(path);
	size_t n = strlen(s);
	ck_assert_msg(n < size, "%s: %zu bytes, room for %zu", path, n,
	              size - 1);
	memcpy(buf, s, n + 1);
}

START_TEST(encrypted_key_needs_password)
{
	need_certs();
	conduit_ctx *s = fk_new_ctx();
	ck_status(conduit_tls_set_cert_file(s, cp("srv.crt"), cp("srv_enc.key"),
	                                    NULL),
	          CONDUIT_ERR_CERT);
	ck_assert_msg(strstr(conduit_ctx_error(s), "no password") != NULL, "%s",
	              conduit_ctx_error(s));
	ck_status(conduit_tls_set_cert_file(s, cp("srv.crt"), cp("srv_enc.key"),
	                                    "wrong"),
	          CONDUIT_ERR_CERT);
	ck_assert_msg(strstr(conduit_ctx_error(s), "wrong password") != NULL,
	              "%s", conduit_ctx_error(s));
	ck_status(
	    conduit_tls_set_cert_file(s, cp("srv.crt"), cp("other.key"), NULL),
	    CONDUIT_ERR_CERT);
	ck_assert_msg(strstr(conduit_ctx_error(s), "does not belong") != NULL,
	              "%s", conduit_ctx_error(s));
	ck_status(conduit_tls_set_cert_file(s, cp("srv.crt"), cp("srv_enc.key"),
	                                    "sekrit"),
	          CONDUIT_OK);
	struct pair p;
	pair_open(&p, s, tls_ctx(NULL), TCP_LISTEN, TCP_NAMED);
	pair_ok(&p);
	pair_talk(&p);
	pair_free(&p);
}
END_TEST

/* CA and identity from memory. */
START_TEST(pem_in_memory)
{
	need_certs();
	char ca[8192], crt[8192], key[8192];
	slurp_into(cp("ca.crt"), ca, sizeof(ca));
	slurp_into(cp("srv.crt"), crt, sizeof(crt));
	slurp_into(cp("srv.key"), key, sizeof(key));
	conduit_ctx *s = fk_new_ctx();
	ck_status(conduit_tls_set_cert_pem(s, crt, strlen(crt), key,
	                                   strlen(key), NULL),
	          CONDUIT_OK);
	conduit_ctx *c = fk_new_ctx();
	ck_status(conduit_tls_set_ca_pem(c, "junk", 4), CONDUIT_ERR_CERT);
	ck_status(conduit_tls_set_ca_pem(c, ca, strlen(ca)), CONDUIT_OK);
	struct pair p;
	pair_open(&p, s, c, TCP_LISTEN, TCP_NAMED);
	pair_ok(&p);
	pair_talk(&p);
	pair_free(&p);
}
END_TEST

/* A TLS listener on a context with no certificate is refused when it is
 * made, naming the URI and what it needs, and binds nothing; so is one
 * whose cert= does not load. */
START_TEST(listen_without_certificate_refused)
{
	need_certs();
	conduit_ctx *ctx = fk_new_ctx();
	static const char *const uris[] = {TCP_LISTEN, "tls://127.0.0.1:0",
	                                   "tls+unix://SOCK"};
	for (size_t i = 0; i < 3; i++) {
		char uri[600];
		snprintf(uri, sizeof(uri), "%s", uris[i]);
		if (strstr(uri, "SOCK") != NULL)
			snprintf(uri, sizeof(uri), "tls+unix://%s",
			         cp("nocert.sock"));
		conduit_listener *l = NULL;
		ck_status(conduit_listen(&l, ctx, uri), CONDUIT_ERR_CERT);
		ck_assert_ptr_null(l);
		const char *msg = conduit_ctx_error(ctx);
		/* tls:// is shown as what it means. */
		const char *shown = i == 1 ? "tls+tcp://127.0.0.1:0" : uri;
		ck_assert_msg(strstr(msg, "listen ") != NULL &&
		                  strstr(msg, shown) != NULL,
		              "no URI in: %s", msg);
		ck_assert_msg(
		    strstr(msg, "needs a certificate") != NULL &&
		        strstr(msg, "conduit_tls_set_cert_file()") != NULL &&
		        strstr(msg, "conduit_tls_add_cert_") != NULL &&
		        strstr(msg, "cert=") != NULL,
		    "%s", msg);
	}
	/* Nothing was bound: the socket file was not made. */
	struct stat sb;
	ck_assert_int_ne(stat(cp("nocert.sock"), &sb), 0);
	/* cert= and key= naming files that are not there. */
	char uri[1200];
	snprintf(uri, sizeof(uri), "tls+tcp://127.0.0.1:0?cert=%s&key=%s",
	         cp("absent.crt"), cp("absent.key"));
	conduit_listener *l = NULL;
	ck_status(conduit_listen(&l, ctx, uri), CONDUIT_ERR_CERT);
	ck_assert_ptr_null(l);
	ck_assert_msg(strstr(conduit_ctx_error(ctx), "absent.crt") != NULL,
	              "%s", conduit_ctx_error(ctx));
	/* With a certificate the same URIs listen. */
	ck_status(
	    conduit_tls_set_cert_file(ctx, cp("srv.crt"), cp("srv.key"), NULL),
	    CONDUIT_OK);
	l = fk_listen(ctx, "tls://127.0.0.1:0");
	conduit_listener_free(l);
	conduit_ctx_free(ctx);
}
END_TEST

/* Changing a setting leaves flows already made alone. */
START_TEST(settings_change_under_live_flows)
{
	struct pair p;
	conduit_ctx *c = tls_ctx(NULL);
	pair_open(&p, tls_ctx("srv"), c, TCP_LISTEN, TCP_NAMED);
	ck_status(conduit_tls_set_ca_file(c, cp("ca2.crt")), CONDUIT_OK);
	ck_status(conduit_tls_set_cert_file(p.sctx, cp("other.crt"),
	                                    cp("other.key"), NULL),
	          CONDUIT_OK);
	pair_ok(&p);
	pair_talk(&p);
	pair_free(&p);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Passwords from a callback                                           */

struct pw_arg {
	const char *pw; /* NULL: refuse */
	int calls;
	char key[512];
};

static int pw_cb(char *buf, size_t size, const char *key, void *arg)
{
	struct pw_arg *a = arg;
	a->calls++;
	snprintf(a->key, sizeof(a->key), "%s", key);
	if (a->pw == NULL)
		return -1;
	size_t n = strlen(a->pw);
	if (n > size)
		return -1;
	memcpy(buf, a->pw, n);
	return (int)n;
}

START_TEST(encrypted_key_password_callback)
{
	need_certs();
	conduit_ctx *s = fk_new_ctx();
	struct pw_arg a = {.pw = "nope"};
	ck_status(conduit_tls_set_password_cb(s, pw_cb, &a), CONDUIT_OK);
	/* The wrong password: the key file and the reason, no crash. */
	ck_status(conduit_tls_set_cert_file(s, cp("srv.crt"), cp("srv_enc.key"),
	                                    NULL),
	          CONDUIT_ERR_CERT);
	ck_assert_int_eq(a.calls, 1);
	ck_assert_str_eq(a.key, cp("srv_enc.key"));
	ck_assert_msg(strstr(conduit_ctx_error(s), cp("srv_enc.key")) != NULL &&
	                  strstr(conduit_ctx_error(s), "wrong password") !=
	                      NULL,
	              "%s", conduit_ctx_error(s));
	/* A callback that refuses: as if no password were known. */
	a.pw = NULL;
	ck_status(conduit_tls_add_cert_file(s, cp("srv.crt"), cp("srv_enc.key"),
	                                    NULL),
	          CONDUIT_ERR_CERT);
	ck_assert_msg(strstr(conduit_ctx_error(s), "no password") != NULL, "%s",
	              conduit_ctx_error(s));
	/* A key that is not encrypted does not ask. */
	a.calls = 0;
	ck_status(conduit_tls_set_cert_file(s, cp("other.crt"), cp("other.key"),
	                                    NULL),
	          CONDUIT_OK);
	ck_assert_int_eq(a.calls, 0);
	/* A password given to the setter comes first. */
	ck_status(conduit_tls_set_cert_file(s, cp("srv.crt"), cp("srv_enc.key"),
	                                    "sekrit"),
	          CONDUIT_OK);
	ck_assert_int_eq(a.calls, 0);
	/* The right one, from memory too, and the key works. */
	a.pw = "sekrit";
	char crt[8192], key[8192];
	slurp_into(cp("srv.crt"), crt, sizeof(crt));
	slurp_into(cp("srv_enc.key"), key, sizeof(key));
	ck_status(conduit_tls_set_cert_pem(s, crt, strlen(crt), key,
	                                   strlen(key), NULL),
	          CONDUIT_OK);
	ck_assert_int_eq(a.calls, 1);
	ck_assert_str_eq(a.key, "(memory)");
	ck_status(conduit_tls_set_cert_file(s, cp("srv.crt"), cp("srv_enc.key"),
	                                    NULL),
	          CONDUIT_OK);
	ck_assert_int_eq(a.calls, 2);
	ck_status(conduit_tls_set_password_cb(NULL, pw_cb, &a),
	          CONDUIT_ERR_INVALID);
	struct pair p;
	pair_open(&p, s, tls_ctx(NULL), TCP_LISTEN, TCP_NAMED);
	pair_ok(&p);
	pair_talk(&p);
	pair_free(&p);

	/* key= in a URI asks the callback too. */
	conduit_ctx *u = fk_new_ctx();
	conduit_ctx_allow_uri_options(u, CONDUIT_URI_FILES);
	ck_status(conduit_tls_set_password_cb(u, pw_cb, &a), CONDUIT_OK);
	char luri[1200];
	snprintf(luri, sizeof(luri), "tls+tcp://127.0.0.1:0?cert=%s&key=%s",
	         cp("srv.crt"), cp("srv_enc.key"));
	a.calls = 0;
	pair_open(&p, u, tls_ctx(NULL), luri, TCP_NAMED);
	pair_ok(&p);
	ck_assert_int_eq(a.calls, 1);
	ck_assert_str_eq(a.key, cp("srv_enc.key"));
	pair_talk(&p);
	pair_free(&p);
}
END_TEST

/*
 * Keys encrypted the ways openssl does: each opens with the right password
 * (and the server it makes serves), and with a wrong one says "wrong
 * password"; a scheme nothing here can decrypt says which and how to
 * re-encrypt, never "wrong password".
 */
START_TEST(encrypted_keys_from_openssl)
{
	need_certs();
	static const char *const ok[] = {"srv_aes.key", "srv_aes_sha1.key",
	                                 "srv_aes128.der", "srv_trad.key",
	                                 "srv_enc.key"};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		conduit_ctx *s = fk_new_ctx();
		ck_status(conduit_tls_set_cert_file(s, cp("srv.crt"), cp(ok[i]),
		                                    "wrong"),
		          CONDUIT_ERR_CERT);
		ck_assert_msg(strstr(conduit_ctx_error(s), ok[i]) != NULL &&
		                  strstr(conduit_ctx_error(s),
		                         ": wrong password") != NULL,
		              "%s: %s", ok[i], conduit_ctx_error(s));
		ck_status(conduit_tls_set_cert_file(s, cp("srv.crt"), cp(ok[i]),
		                                    NULL),
		          CONDUIT_ERR_CERT);
		ck_assert_msg(strstr(conduit_ctx_error(s), "no password") !=
		                  NULL,
		              "%s: %s", ok[i], conduit_ctx_error(s));
		int rc = conduit_tls_set_cert_file(s, cp("srv.crt"), cp(ok[i]),
		                                   "sekrit");
		ck_assert_msg(rc == CONDUIT_OK, "%s: %s", ok[i],
		              conduit_ctx_error(s));
		struct pair p;
		pair_open(&p, s, tls_ctx(NULL), TCP_LISTEN, TCP_NAMED);
		pair_ok(&p);
		pair_talk(&p);
		pair_free(&p);
	}
	/* OpenSSL 3's default, from memory and through the callback. */
	char crt[8192], key[8192];
	slurp_into(cp("srv.crt"), crt, sizeof(crt));
	slurp_into(cp("srv_aes.key"), key, sizeof(key));
	conduit_ctx *s = fk_new_ctx();
	ck_status(conduit_tls_set_cert_pem(s, crt, strlen(crt), key,
	                                   strlen(key), "sekri"),
	          CONDUIT_ERR_CERT);
	ck_assert_msg(
	    strstr(conduit_ctx_error(s), "key (memory): wrong password"), "%s",
	    conduit_ctx_error(s));
	ck_status(conduit_tls_set_cert_pem(s, crt, strlen(crt), key,
	                                   strlen(key), "sekrit"),
	          CONDUIT_OK);
	struct pw_arg pa = {.pw = "sekrit"};
	ck_status(conduit_tls_set_password_cb(s, pw_cb, &pa), CONDUIT_OK);
	ck_status(conduit_tls_add_cert_file(s, cp("srv.crt"), cp("srv_aes.key"),
	                                    NULL),
	          CONDUIT_OK);
	ck_assert_int_eq(pa.calls, 1);
	conduit_ctx_free(s);

	/* scrypt: named, with the way out, whatever the password. */
	const char *pws[] = {"sekrit", "wrong"};
	for (size_t i = 0; i < 2; i++) {
		s = fk_new_ctx();
		ck_status(conduit_tls_set_cert_file(
		              s, cp("srv.crt"), cp("srv_scrypt.key"), pws[i]),
		          CONDUIT_ERR_CERT);
		const char *msg = conduit_ctx_error(s);
		ck_assert_msg(strstr(msg,
		                     "srv_scrypt.key: encrypted with PBES2 "
		                     "(scrypt, aes-256-cbc), which this "
		                     "build") != NULL &&
		                  strstr(msg, "cannot decrypt") != NULL &&
		                  strstr(msg, "openssl pkey") != NULL &&
		                  strstr(msg, "wrong password") == NULL,
		              "%s", msg);
		conduit_ctx_free(s);
	}
}
END_TEST

/* ------------------------------------------------------------------ */
/* Certificates by SNI                                                 */

/* Connect with servername sn; the client checks the certificate and must
 * find want as its subject, the server must see sn. */
static void sni_case(conduit_ctx *s, const char *sn, const char *want)
{
	struct pair p;
	char fmt[160];
	snprintf(fmt, sizeof(fmt), "tls+tcp://127.0.0.1:PORT?servername=%s",
	         sn);
	pair_open(&p, s, tls_ctx(NULL), TCP_LISTEN, fmt);
	pair_handshake(&p);
	if (want == NULL) {
		ck_assert_msg(p.rc_c == CONDUIT_ERR_CERT, "%s: %s: %s", sn,
		              conduit_status_name(p.rc_c),
		              conduit_flow_error(p.c));
		ck_assert_msg(strstr(conduit_flow_error(p.c),
		                     "its names do not include") != NULL,
		              "%s", conduit_flow_error(p.c));
	} else {
		ck_assert_msg(
		    p.rc_c == CONDUIT_OK && p.rc_s == CONDUIT_OK,
		    "%s: client %s (%s), server %s (%s)", sn,
		    conduit_status_name(p.rc_c), conduit_flow_error(p.c),
		    conduit_status_name(p.rc_s), conduit_flow_error(p.s));
		char subj[256];
		ck_status(conduit_tls_peer_subject(p.c, subj, sizeof(subj)),
		          CONDUIT_OK);
		ck_assert_str_eq(subj, want);
		ck_assert_str_eq(conduit_tls_servername(p.s), sn);
		pair_talk(&p);
	}
	conduit_flow_free(p.c);
	conduit_flow_free(p.s);
	conduit_listener_free(p.l);
	conduit_ctx_free(p.cctx);
}

START_TEST(sni_picks_certificate)
{
	conduit_ctx *s = sni_server();
	sni_case(s, "other.example", "CN=other.example");
	sni_case(s, "localhost", "CN=localhost");
	/* A wildcard covers one label, no more and no less. */
	sni_case(s, "a.wild.example", "CN=wild");
	sni_case(s, "a.b.wild.example", NULL);
	sni_case(s, "wild.example", NULL);
	/* An IP literal sends no name: the default, checked by IP. */
	struct pair p;
	pair_open(&p, s, tls_ctx(NULL), TCP_LISTEN, "tls+tcp://127.0.0.1:PORT");
	pair_ok(&p);
	char subj[256];
	ck_status(conduit_tls_peer_subject(p.c, subj, sizeof(subj)),
	          CONDUIT_OK);
	ck_assert_str_eq(subj, "CN=localhost");
	ck_assert_ptr_null(conduit_tls_servername(p.s));
	pair_free(&p);
}
END_TEST

int main(void)
{
	const struct cd_test tests[] = {
	    CD_TEST(encrypted_key_needs_password, 0),
	    CD_TEST(pem_in_memory, 0),
	    CD_TEST(encrypted_keys_from_openssl, 20),
	    CD_TEST(listen_without_certificate_refused, 0),
	    CD_TEST(settings_change_under_live_flows, 0),
	    CD_TEST(encrypted_key_password_callback, 0),
	    CD_TEST(sni_picks_certificate, 20),
	};
	return tk_main("tls_keys", tests, sizeof(tests) / sizeof(tests[0]));
}
