/*
 * tlskit.c - what the TLS suites (test_tls_*.c) share: the test
 * certificates, made once per suite run by the openssl command, contexts
 * that trust them, pairs of conduit flows in one process (listen, connect,
 * accept, handshake, talk, reconnect), and each suite's main().
 */
#include "tlskit.h"

#include <conduit/conduit.h>
#include <conduit/tls.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Certificates                                                        */

struct cd_certs certs;

/* A file in the certificate directory (rotating static buffers). */
const char *cp(const char *name)
{
	return cd_certs_file(&certs, name);
}

/*
 * The fixtures, P-256 throughout:
 *   ca        the test CA;  ca2  another CA nobody trusts
 *   srv       CN=localhost, SANs DNS:localhost and IP:127.0.0.1
 *   cnip      CN=127.0.0.1 and no SAN: must not pass for 127.0.0.1
 *   other     CN and DNS:other.example
 *   expired   valid 2020-2021;  future  valid from 2090
 *   client    CN=client one, DNS/email/URI names, clientAuth
 *   client2   the same from ca2
 *   wild      CN=wild, DNS:*.wild.example
 *   srv_enc.key  srv's key encrypted with the password "sekrit"
 *                (OpenSSL 3's PKCS#8 default for -des3: PBES2, PBKDF2,
 *                hmacWithSHA256, des-ede3-cbc); with the same password:
 *   srv_aes.key       openssl pkey -aes256 (PBES2, PBKDF2, hmacWithSHA256,
 *                     aes-256-cbc: the default of OpenSSL 3)
 *   srv_aes_sha1.key  PBES2 with hmacWithSHA1 and aes-256-cbc
 *   srv_aes128.der    PBES2 with aes-128-cbc, as DER
 *   srv_trad.key      legacy PEM (Proc-Type, DEK-Info: DES-EDE3-CBC)
 *   srv_scrypt.key    PBES2 with scrypt, which nothing here decrypts
 * made by cd_certs_make() (see harness.h): cert_cnf holds the sections of
 * cnf beyond the CA's and ext_srv, cert_steps the steps of make.sh.
 */
static const char cert_cnf[] =
    "[ext_cnip]\n"
    "basicConstraints = CA:FALSE\n"
    "keyUsage = critical,digitalSignature\n"
    "extendedKeyUsage = serverAuth\n"
    "[ext_other]\n"
    "basicConstraints = CA:FALSE\n"
    "keyUsage = critical,digitalSignature\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = DNS:other.example\n"
    "[ext_wild]\n"
    "basicConstraints = CA:FALSE\n"
    "keyUsage = critical,digitalSignature\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = DNS:*.wild.example\n"
    "[ext_client]\n"
    "basicConstraints = CA:FALSE\n"
    "keyUsage = critical,digitalSignature\n"
    "extendedKeyUsage = clientAuth\n"
    "subjectAltName = DNS:client.example,email:client@example.org,"
    "URI:spiffe://conduit/test\n"
    "[ca]\n"
    "default_ca = cd_ca\n"
    "[cd_ca]\n"
    "database = index.txt\n"
    "new_certs_dir = .\n"
    "serial = serial\n"
    "default_md = sha256\n"
    "policy = pol\n"
    "unique_subject = no\n"
    "[pol]\n"
    "commonName = supplied\n";

/* dated NAME START END: a localhost server certificate valid from START to
 * END only, which leaf cannot make. */
static const char cert_steps[] =
    "dated() { key $1; openssl req -new -key $1.key -subj \"/CN=localhost\" "
    "-config cnf -out $1.csr; openssl ca -batch -config cnf -cert ca.crt "
    "-keyfile ca.key -in $1.csr -out $1.crt -startdate $2 -enddate $3 "
    "-extensions ext_srv -extfile cnf -notext; }\n"
    "ca ca 'conduit test CA'\n"
    "ca ca2 'conduit other CA'\n"
    "leaf srv localhost ext_srv ca 2\n"
    "leaf cnip 127.0.0.1 ext_cnip ca 3\n"
    "leaf other other.example ext_other ca 4\n"
    "leaf client 'client one' ext_client ca 5\n"
    "leaf client2 'client two' ext_client ca2 6\n"
    "leaf wild wild ext_wild ca 7\n"
    ": > index.txt\n"
    "echo 10 > serial\n"
    "dated expired 20200101000000Z 20210101000000Z\n"
    "dated future 20900101000000Z 20910101000000Z\n"
    "openssl pkey -in srv.key -des3 -passout pass:sekrit -out "
    "srv_enc.key\n"
    "openssl pkey -in srv.key -aes256 -passout pass:sekrit -out "
    "srv_aes.key\n"
    "openssl pkcs8 -topk8 -in srv.key -v2 aes256 -v2prf hmacWithSHA1 "
    "-passout pass:sekrit -out srv_aes_sha1.key\n"
    "openssl pkcs8 -topk8 -in srv.key -v2 aes128 -outform DER "
    "-passout pass:sekrit -out srv_aes128.der\n"
    "openssl pkey -in srv.key -des3 -traditional -passout pass:sekrit "
    "-out srv_trad.key\n"
    "openssl pkcs8 -topk8 -in srv.key -scrypt -passout pass:sekrit "
    "-out srv_scrypt.key\n";

void need_certs(void)
{
	cd_certs_need(&certs);
}

/* ------------------------------------------------------------------ */
/* Contexts and pairs in one process                                   */

/* A context whose identity is name.crt/name.key (NULL: none) and which
 * trusts the test CA. */
conduit_ctx *tls_ctx(const char *name)
{
	need_certs();
	conduit_ctx *ctx = fk_new_ctx();
	if (name != NULL) {
		char crt[64], key[64];
		snprintf(crt, sizeof(crt), "%s.crt", name);
		snprintf(key, sizeof(key), "%s.key", name);
		ck_status(
		    conduit_tls_set_cert_file(ctx, cp(crt), cp(key), NULL),
		    CONDUIT_OK);
	}
	ck_status(conduit_tls_set_ca_file(ctx, cp("ca.crt")), CONDUIT_OK);
	return ctx;
}

/* fmt with its "PORT" replaced by port. */
void with_port(char *buf, size_t len, const char *fmt, int port)
{
	const char *at = strstr(fmt, "PORT");
	if (at == NULL)
		snprintf(buf, len, "%s", fmt);
	else
		snprintf(buf, len, "%.*s%d%s", (int)(at - fmt), fmt, port,
		         at + 4);
}

/* Listen on luri with sctx; connect with cctx to fmt (its "PORT"
 * replaced); accept. */
void pair_open(struct pair *p, conduit_ctx *sctx, conduit_ctx *cctx,
               const char *luri, const char *fmt)
{
	memset(p, 0, sizeof(*p));
	p->sctx = sctx;
	p->cctx = cctx;
	p->l = fk_listen(sctx, luri);
	with_port(p->uri, sizeof(p->uri), fmt,
	          strstr(fmt, "PORT") != NULL ? fk_listener_port(p->l) : 0);
	int rc = conduit_connect(&p->c, cctx, p->uri);
	ck_assert_msg(rc == CONDUIT_OK, "connect %s: %s: %s", p->uri,
	              conduit_status_name(rc), conduit_ctx_error(cctx));
	rc = conduit_accept_wait(&p->s, p->l, cd_scaled(5000));
	ck_assert_msg(rc == CONDUIT_OK, "accept: %s: %s",
	              conduit_status_name(rc), conduit_listener_error(p->l));
}

/* Drive both handshakes with conduit_poll() until both end (or one failed
 * and the other has had a second to notice). */
void pair_handshake(struct pair *p)
{
	p->rc_c = p->rc_s = CONDUIT_WANT_READ;
	uint64_t end = cd_now_ms() + (uint64_t)cd_scaled(10000);
	uint64_t failed_at = 0;
	while (cd_now_ms() < end) {
		if (fk_is_want(p->rc_c))
			p->rc_c = conduit_handshake(p->c);
		if (fk_is_want(p->rc_s))
			p->rc_s = conduit_handshake(p->s);
		bool wc = fk_is_want(p->rc_c), ws = fk_is_want(p->rc_s);
		if (!wc && !ws)
			return;
		if ((!wc && p->rc_c != CONDUIT_OK) ||
		    (!ws && p->rc_s != CONDUIT_OK)) {
			if (failed_at == 0)
				failed_at = cd_now_ms();
			else if (cd_now_ms() - failed_at > 1000)
				return;
		}
		struct conduit_pollitem it[2];
		size_t n = 0, nready;
		if (wc)
			it[n++] = (struct conduit_pollitem){
			    .flow = p->c, .events = CONDUIT_POLLOUT};
		if (ws)
			it[n++] = (struct conduit_pollitem){
			    .flow = p->s, .events = CONDUIT_POLLOUT};
		ck_status(conduit_poll(p->cctx, it, n, 200, &nready),
		          CONDUIT_OK);
	}
}

void pair_ok(struct pair *p)
{
	pair_handshake(p);
	ck_assert_msg(p->rc_c == CONDUIT_OK && p->rc_s == CONDUIT_OK,
	              "handshake %s: client %s (%s), server %s (%s)", p->uri,
	              conduit_status_name(p->rc_c), conduit_flow_error(p->c),
	              conduit_status_name(p->rc_s), conduit_flow_error(p->s));
}

void pair_free(struct pair *p)
{
	conduit_flow_free(p->c);
	conduit_flow_free(p->s);
	conduit_listener_free(p->l);
	if (p->cctx != p->sctx)
		conduit_ctx_free(p->cctx);
	conduit_ctx_free(p->sctx);
}

/* Read until buf holds want bytes (or a newline when want is 0). */
size_t read_some(conduit_flow *f, char *buf, size_t cap, size_t want)
{
	size_t got = 0;
	for (int i = 0; i < 1000 && got < cap - 1; i++) {
		size_t n = 0;
		size_t room = want ? want - got : cap - 1 - got;
		int rc =
		    conduit_read_wait(f, buf + got, room, &n, cd_scaled(5000));
		ck_assert_msg(rc == CONDUIT_OK, "read: %s: %s",
		              conduit_status_name(rc), conduit_flow_error(f));
		got += n;
		buf[got] = '\0';
		if (want ? got == want : memchr(buf, '\n', got) != NULL)
			break;
	}
	return got;
}

void send_str(conduit_flow *f, const char *s)
{
	int rc = conduit_write_all(f, s, strlen(s), NULL, cd_scaled(5000));
	ck_assert_msg(rc == CONDUIT_OK, "write: %s: %s",
	              conduit_status_name(rc), conduit_flow_error(f));
}

/* A message exchange each way over an established pair. */
void pair_talk(struct pair *p)
{
	char buf[64];
	send_str(p->c, "ping\n");
	read_some(p->s, buf, sizeof(buf), 5);
	ck_assert_str_eq(buf, "ping\n");
	send_str(p->s, "pong\n");
	read_some(p->c, buf, sizeof(buf), 5);
	ck_assert_str_eq(buf, "pong\n");
}

/* A server with srv (the default), other and wild. */
conduit_ctx *sni_server(void)
{
	conduit_ctx *s = tls_ctx("srv");
	ck_status(conduit_tls_add_cert_file(s, cp("other.crt"), cp("other.key"),
	                                    NULL),
	          CONDUIT_OK);
	ck_status(
	    conduit_tls_add_cert_file(s, cp("wild.crt"), cp("wild.key"), NULL),
	    CONDUIT_OK);
	return s;
}

/* Close and free p's flows, then connect again to fmt (NULL: the same
 * URI) on the same listener and run the handshake. */
void pair_again(struct pair *p, const char *fmt)
{
	conduit_close(p->c);
	conduit_close(p->s);
	conduit_flow_free(p->c);
	conduit_flow_free(p->s);
	p->c = p->s = NULL;
	if (fmt != NULL)
		with_port(p->uri, sizeof(p->uri), fmt, fk_listener_port(p->l));
	int rc = conduit_connect(&p->c, p->cctx, p->uri);
	ck_assert_msg(rc == CONDUIT_OK, "connect %s: %s", p->uri,
	              conduit_ctx_error(p->cctx));
	rc = conduit_accept_wait(&p->s, p->l, cd_scaled(5000));
	ck_assert_msg(rc == CONDUIT_OK, "accept: %s",
	              conduit_listener_error(p->l));
	pair_ok(p);
}

/* Make the certificates, run the suite, remove them. */
int tk_main(const char *name, const struct cd_test *tests, size_t n)
{
	cd_certs_make(&certs, "conduit-tls", 30, cert_cnf, cert_steps);
	int rc = cd_run(cd_suite(name, tests, n));
	cd_certs_remove(&certs);
	return rc;
}
