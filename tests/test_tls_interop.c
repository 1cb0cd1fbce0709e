/*
 * test_tls_interop.c - conduit against the openssl command in both
 * roles: s_server verified through the API's and the URI's CA, ALPN, s_client
 * to a conduit server, the default certificate for an unknown SNI name, and
 * resumption across the two implementations.
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
/* openssl peers                                                       */

/* openssl s_server -rev with srv's identity and extra arguments. */
static pid_t start_s_server(int *port, const char *const *extra)
{
	return cd_openssl_s_server(port, cp("srv.crt"), cp("srv.key"),
	                           cp("s_server.log"), extra);
}

static void stop_peer(pid_t pid)
{
	kill(pid, SIGTERM);
	cd_wait_peer(pid, cd_scaled(5000));
}

/* Connect to an s_server -rev and check a line comes back reversed. */
static void rev_exchange(conduit_ctx *ctx, const char *uri)
{
	conduit_flow *f = NULL;
	int rc = conduit_connect(&f, ctx, uri);
	ck_assert_msg(rc == CONDUIT_OK, "connect %s: %s", uri,
	              conduit_ctx_error(ctx));
	rc = fk_drive_handshake(ctx, f, 200);
	ck_assert_msg(rc == CONDUIT_OK, "handshake %s: %s: %s", uri,
	              conduit_status_name(rc), conduit_flow_error(f));
	send_str(f, "hello conduit\n");
	char buf[64];
	read_some(f, buf, sizeof(buf), 0);
	ck_assert_str_eq(buf, "tiudnoc olleh\n");
	ck_assert_str_eq(conduit_tls_version(f), "TLSv1.2");
	conduit_close_wait(f, cd_scaled(2000));
	conduit_flow_free(f);
}

START_TEST(s_server_verified_by_api_ca)
{
	int port;
	pid_t pid = start_s_server(&port, NULL);
	conduit_ctx *ctx = tls_ctx(NULL);
	char uri[128];
	/* The DNS name, and the IP literal against the IP SAN. */
	with_port(uri, sizeof(uri), TCP_NAMED, port);
	rev_exchange(ctx, uri);
	with_port(uri, sizeof(uri), "tls+tcp://127.0.0.1:PORT", port);
	rev_exchange(ctx, uri);
	conduit_ctx_free(ctx);
	stop_peer(pid);
}
END_TEST

START_TEST(s_server_verified_by_uri_ca)
{
	need_certs();
	int port;
	pid_t pid = start_s_server(&port, NULL);
	conduit_ctx *ctx = fk_new_ctx();
	char uri[600];
	snprintf(uri, sizeof(uri), "tls+tcp://127.0.0.1:%d?ca=%s", port,
	         cp("ca.crt"));
	conduit_flow *f = NULL;
	/* Refused until the context allows file options in URIs. */
	ck_status(conduit_connect(&f, ctx, uri), CONDUIT_ERR_OPTION);
	conduit_ctx_allow_uri_options(ctx, CONDUIT_URI_FILES);
	rev_exchange(ctx, uri);
	conduit_ctx_free(ctx);
	stop_peer(pid);
}
END_TEST

START_TEST(s_server_alpn)
{
	int port;
	const char *extra[] = {"-alpn", "h2,http/1.1", NULL};
	pid_t pid = start_s_server(&port, extra);
	conduit_ctx *ctx = tls_ctx(NULL);
	char uri[160];
	with_port(uri, sizeof(uri), TCP_NAMED "&alpn=http/1.1", port);
	conduit_flow *f = NULL;
	ck_status(conduit_connect(&f, ctx, uri), CONDUIT_OK);
	ck_status(fk_drive_handshake(ctx, f, 200), CONDUIT_OK);
	ck_assert_ptr_nonnull(conduit_tls_alpn(f));
	ck_assert_str_eq(conduit_tls_alpn(f), "http/1.1");
	conduit_flow_free(f);
	conduit_ctx_free(ctx);
	stop_peer(pid);
}
END_TEST

/* A conduit server, openssl s_client verifying it, with mTLS both ways. */
START_TEST(s_client_to_conduit_server)
{
	conduit_ctx *ctx = tls_ctx("srv");
	ck_status(conduit_tls_set_client_auth(ctx, CONDUIT_TLS_VERIFY_REQUIRED),
	          CONDUIT_OK);
	conduit_listener *l = fk_listen(ctx, TCP_LISTEN);
	char connect[64];
	snprintf(connect, sizeof(connect), "127.0.0.1:%d", fk_listener_port(l));
	cd_write_file(cp("s_client.in"), "ping\n");
	const char *argv[] = {
	    "openssl",        "s_client",       "-connect",
	    connect,          "-servername",    "localhost",
	    "-CAfile",        cp("ca.crt"),     "-verify_return_error",
	    "-cert",          cp("client.crt"), "-key",
	    cp("client.key"), "-ign_eof",       NULL};
	pid_t pid =
	    cd_spawn_logged(argv, cp("s_client.in"), cp("s_client.log"));
	conduit_flow *s = NULL;
	ck_status(conduit_accept_wait(&s, l, cd_scaled(5000)), CONDUIT_OK);
	ck_assert(conduit_tls_is_tls(s));
	int rc = fk_drive_handshake(ctx, s, 200);
	ck_assert_msg(rc == CONDUIT_OK, "handshake: %s: %s",
	              conduit_status_name(rc), conduit_flow_error(s));
	ck_assert_str_eq(conduit_tls_servername(s), "localhost");
	char subj[256];
	ck_status(conduit_tls_peer_subject(s, subj, sizeof(subj)), CONDUIT_OK);
	ck_assert_str_eq(subj, "CN=client one");
	char buf[64];
	read_some(s, buf, sizeof(buf), 5);
	ck_assert_str_eq(buf, "ping\n");
	send_str(s, "pong\n");
	ck_status(conduit_close_wait(s, cd_scaled(5000)), CONDUIT_OK);
	conduit_flow_free(s);
	const char *log = cd_wait_logged(pid, cd_scaled(10000), "s_client",
	                                 cp("s_client.log"));
	ck_assert_msg(strstr(log, "Verify return code: 0 (ok)") != NULL, "%s",
	              log);
	ck_assert_msg(strstr(log, "pong") != NULL, "%s", log);
	ck_assert_msg(strstr(log, "TLSv1.2") != NULL, "%s", log);
	conduit_listener_free(l);
	conduit_ctx_free(ctx);
}
END_TEST

/* What openssl s_client is shown by a conduit server with three
 * identities when it asks for name (NULL: no SNI). */
static const char *s_client_sees(conduit_ctx *ctx, const char *name)
{
	conduit_listener *l = fk_listen(ctx, TCP_LISTEN);
	char connect[64];
	snprintf(connect, sizeof(connect), "127.0.0.1:%d", fk_listener_port(l));
	const char *argv[] = {"openssl",
	                      "s_client",
	                      "-connect",
	                      connect,
	                      "-CAfile",
	                      cp("ca.crt"),
	                      name != NULL ? "-servername" : "-noservername",
	                      name,
	                      NULL};
	pid_t pid = cd_spawn_logged(argv, NULL, cp("s_client.log"));
	conduit_flow *s = NULL;
	ck_status(conduit_accept_wait(&s, l, cd_scaled(5000)), CONDUIT_OK);
	int rc = fk_drive_handshake(ctx, s, 200);
	ck_assert_msg(rc == CONDUIT_OK, "handshake: %s: %s",
	              conduit_status_name(rc), conduit_flow_error(s));
	conduit_close_wait(s, cd_scaled(5000));
	conduit_flow_free(s);
	const char *log = cd_wait_logged(pid, cd_scaled(10000), "s_client",
	                                 cp("s_client.log"));
	conduit_listener_free(l);
	return log;
}

START_TEST(sni_unknown_name_gets_default)
{
	conduit_ctx *s = sni_server();
	const char *log = s_client_sees(s, "nobody.example");
	ck_assert_msg(strstr(log, "subject=CN = localhost") != NULL, "%s", log);
	log = s_client_sees(s, NULL);
	ck_assert_msg(strstr(log, "subject=CN = localhost") != NULL, "%s", log);
	/* Names compare without regard to case (conduit's URIs lower-case
	 * them; s_client sends them as given). */
	log = s_client_sees(s, "X.Wild.EXAMPLE");
	ck_assert_msg(strstr(log, "subject=CN = wild") != NULL, "%s", log);
	/* At most 16 identities. */
	for (int i = 0; i < 13; i++)
		ck_status(conduit_tls_add_cert_file(s, cp("other.crt"),
		                                    cp("other.key"), NULL),
		          CONDUIT_OK);
	ck_status(conduit_tls_add_cert_file(s, cp("other.crt"), cp("other.key"),
	                                    NULL),
	          CONDUIT_ERR_INVALID);
	ck_assert_msg(strstr(conduit_ctx_error(s), "at most 16") != NULL, "%s",
	              conduit_ctx_error(s));
	/* set_cert replaces them all. */
	ck_status(
	    conduit_tls_set_cert_file(s, cp("wild.crt"), cp("wild.key"), NULL),
	    CONDUIT_OK);
	log = s_client_sees(s, "other.example");
	ck_assert_msg(strstr(log, "subject=CN = wild") != NULL, "%s", log);
	conduit_ctx_free(s);
}
END_TEST

/* openssl s_client -reconnect: one full handshake, then five with the
 * same session; the conduit server must resume those five.  extra: an
 * option for s_client (NULL: none). */
static void s_client_reconnects(conduit_ctx *ctx, const char *extra)
{
	conduit_listener *l = fk_listen(ctx, TCP_LISTEN);
	char connect[64];
	snprintf(connect, sizeof(connect), "127.0.0.1:%d", fk_listener_port(l));
	const char *argv[] = {"openssl", "s_client",    "-connect",
	                      connect,   "-servername", "localhost",
	                      "-CAfile", cp("ca.crt"),  "-reconnect",
	                      extra,     NULL};
	pid_t pid = cd_spawn_logged(argv, NULL, cp("s_client.log"));
	int resumed = 0;
	for (int i = 0; i < 6; i++) {
		conduit_flow *s = NULL;
		int rc = conduit_accept_wait(&s, l, cd_scaled(5000));
		ck_assert_msg(rc == CONDUIT_OK, "accept %d: %s", i,
		              conduit_listener_error(l));
		rc = fk_drive_handshake(ctx, s, 200);
		ck_assert_msg(rc == CONDUIT_OK, "handshake %d: %s: %s", i,
		              conduit_status_name(rc), conduit_flow_error(s));
		resumed += conduit_tls_resumed(s);
		ck_assert_int_eq(conduit_tls_resumed(s), i > 0);
		conduit_close(s);
		conduit_flow_free(s);
	}
	const char *log = cd_wait_logged(pid, cd_scaled(10000), "s_client",
	                                 cp("s_client.log"));
	ck_assert_msg(strstr(log, "Reused, TLSv1.2") != NULL, "%s", log);
	ck_assert_int_eq(resumed, 5);
	conduit_listener_free(l);
}

/* A conduit client resuming with openssl s_server (tickets, then its
 * session cache). */
static void s_server_resumed(const char *const *extra)
{
	int port;
	pid_t pid = start_s_server(&port, extra);
	conduit_ctx *ctx = tls_ctx(NULL);
	char uri[128];
	with_port(uri, sizeof(uri), TCP_NAMED, port);
	for (int i = 0; i < 3; i++) {
		conduit_flow *f = NULL;
		ck_status(conduit_connect(&f, ctx, uri), CONDUIT_OK);
		int rc = fk_drive_handshake(ctx, f, 200);
		ck_assert_msg(rc == CONDUIT_OK, "handshake %d: %s: %s", i,
		              conduit_status_name(rc), conduit_flow_error(f));
		ck_assert_int_eq(conduit_tls_resumed(f), i > 0);
		send_str(f, "again\n");
		char buf[64];
		read_some(f, buf, sizeof(buf), 0);
		ck_assert_str_eq(buf, "niaga\n");
		if (i == 0) {
			conduit_tls_session *sess = NULL;
			ck_status(conduit_tls_session_get(f, &sess),
			          CONDUIT_OK);
			ck_status(conduit_tls_set_session(ctx, sess),
			          CONDUIT_OK);
			conduit_tls_session_free(sess);
		}
		conduit_close_wait(f, cd_scaled(2000));
		conduit_flow_free(f);
	}
	conduit_ctx_free(ctx);
	stop_peer(pid);
}

START_TEST(s_server_resumes_conduit_client)
{
	s_server_resumed(NULL);
	const char *no_ticket[] = {"-no_ticket", NULL};
	s_server_resumed(no_ticket);
}
END_TEST

START_TEST(s_client_reconnect_resumes)
{
	conduit_ctx *ctx = tls_ctx("srv");
	s_client_reconnects(ctx, NULL);         /* tickets */
	s_client_reconnects(ctx, "-no_ticket"); /* the session cache */
	conduit_ctx_free(ctx);
}
END_TEST

int main(void)
{
	const struct cd_test tests[] = {
	    CD_TEST(s_server_verified_by_api_ca, 20),
	    CD_TEST(s_server_verified_by_uri_ca, 20),
	    CD_TEST(s_server_alpn, 20),
	    CD_TEST(s_client_to_conduit_server, 20),
	    CD_TEST(sni_unknown_name_gets_default, 20),
	    CD_TEST(s_client_reconnect_resumes, 20),
	    CD_TEST(s_server_resumes_conduit_client, 20),
	};
	return tk_main("tls_interop", tests, sizeof(tests) / sizeof(tests[0]));
}
