/*
 * tls.h - the TLS layer's configuration (per context) and its queries (per
 * flow).  Present when conduit is built with CONDUIT_WITH_TLS.
 *
 * TLS is a layer over any flow: "tls+tcp://", "tls+unix://", a service
 * scheme whose table entry says tls ("https://"), a listener on such a URI
 * (its accepted flows are TLS servers), or conduit_starttls() on an open
 * flow.  The settings below belong to the context and apply to every TLS
 * flow it makes from then on; flows already made keep the settings they
 * started with.  URI options (ca=, cert=, key=, alpn=, servername=,
 * insecure-no-verify=) override them for one endpoint, where the context
 * allows such options (conduit_ctx_allow_uri_options()).
 *
 * Defaults are secure: a client verifies the server's certificate chain
 * against the system's CA bundle (read once per context, on first use) and
 * the host name it connects to (DNS names, or the IP-address names of the
 * certificate for an IP literal); TLS 1.2 or later; ECDHE key exchange with
 * AEAD ciphers only; curves P-256, x25519, P-384.
 *
 * A server needs an identity: conduit_listen() refuses a TLS listener on
 * a context without one (and without cert= and key= in the URI) with
 * CONDUIT_ERR_CERT, as it refuses one whose cert= or key= (or, when
 * client certificates are asked for, ca=) does not load, before binding
 * anything.
 *
 * Observer events (see conduit.h): a TLS flow reports accepted (server),
 * tls-handshaking, tls-handshaked, failed and closed once each, under its
 * tls+ URI; the transport under it reports only connecting and connected.
 * A failure of the transport is the TLS flow's "failed".
 *
 * Every setter returns CONDUIT_OK, CONDUIT_ERR_INVALID for bad arguments,
 * CONDUIT_ERR_NO_BACKEND when the context has no TLS layer of this build
 * registered, CONDUIT_ERR_NOMEM, or the failure named below, with a message
 * on the context (conduit_ctx_error()).  On failure the previous setting is
 * kept.  Setters copy what they are given: the caller keeps ownership of
 * its strings and buffers.
 */
#ifndef CONDUIT_TLS_H
#define CONDUIT_TLS_H

#include <conduit/conduit.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* Trust (whom a client trusts, and whose client certificates a server  */
/* accepts)                                                             */

/*
 * Trust the CA certificates in a PEM or DER file, or in every file of a
 * directory, instead of the system bundle.  NULL goes back to the system
 * bundle.  CONDUIT_ERR_CERT when nothing usable could be read (the message
 * says why); a file with some unparsable entries is accepted for the ones
 * that parse.
 */
int conduit_tls_set_ca_file(conduit_ctx *ctx, const char *path_or_dir);

/* The same from PEM (one or more certificates) in memory; len is the
 * number of bytes of pem (no terminating NUL needed). */
int conduit_tls_set_ca_pem(conduit_ctx *ctx, const char *pem, size_t len);

/* ------------------------------------------------------------------ */
/* Identity (a server's certificate, or a client's for mutual TLS)      */

/*
 * The certificate chain (PEM or DER file: the leaf first, then the
 * intermediates) and its private key.  A key encrypted with a password
 * needs password (or, with password NULL, the context's password callback,
 * see conduit_tls_set_password_cb()); it is used once, here, and not kept.
 * CONDUIT_ERR_CERT when a file cannot be read or parsed, the password is
 * wrong ("key FILE: wrong password") or missing, the key is encrypted with
 * a scheme this build cannot decrypt (the message names it), or the key
 * does not belong to the certificate.  Encrypted keys may be legacy PEM
 * (DEK-Info: DES, 3DES, AES-CBC) or PKCS#8 (PEM or DER) with PBES2, PBKDF2
 * (HMAC-SHA1 to SHA-512) and AES-CBC, DES or 3DES, which covers what
 * OpenSSL 3 writes by default (openssl pkey -aes256), or PKCS#12's 3DES;
 * not scrypt.  Servers need an
 * identity; clients present it when a server asks for one.
 */
int conduit_tls_set_cert_file(conduit_ctx *ctx, const char *cert_path,
                              const char *key_path, const char *password);

/* The same from PEM in memory (lengths in bytes, no NUL needed). */
int conduit_tls_set_cert_pem(conduit_ctx *ctx, const char *cert_pem,
                             size_t cert_len, const char *key_pem,
                             size_t key_len, const char *password);

/*
 * Several server certificates, chosen by the name a client asks for (SNI).
 * conduit_tls_set_cert_*() replaces every identity with one;
 * conduit_tls_add_cert_*() adds one more (at most 16), with the same
 * arguments and failures.  A server answers with the first identity whose
 * leaf certificate names the client's server name (DNS subject alternative
 * names, where "*.example.org" stands for exactly one label, as in
 * "a.example.org" but not "example.org" or "a.b.example.org"; the subject's
 * CN only when there are no DNS names), and with the first identity added
 * (the default) when the client sends no name or a name none carries.  A
 * client presents the first identity.
 */
int conduit_tls_add_cert_file(conduit_ctx *ctx, const char *cert_path,
                              const char *key_path, const char *password);
int conduit_tls_add_cert_pem(conduit_ctx *ctx, const char *cert_pem,
                             size_t cert_len, const char *key_pem,
                             size_t key_len, const char *password);

/*
 * Passwords of encrypted private keys, asked for when a key is loaded
 * (conduit_tls_set_cert_*(), conduit_tls_add_cert_*() with a NULL password,
 * and key= options) and found encrypted.  fn writes the password into buf
 * (at most size bytes, no NUL needed) and returns its length, or -1 to
 * refuse (the load then fails: "the key is encrypted and no password was
 * given").  key names the key: its file, or "(memory)".  buf is wiped after
 * use.  A password passed to a setter is used first and the callback is not
 * asked.  fn NULL removes the callback.
 */
typedef int (*conduit_tls_password_fn)(char *buf, size_t size, const char *key,
                                       void *arg);
int conduit_tls_set_password_cb(conduit_ctx *ctx, conduit_tls_password_fn fn,
                                void *arg);

/* ------------------------------------------------------------------ */
/* Behaviour                                                            */

/* Client certificates asked of clients by a server (default NONE).
 * OPTIONAL asks but lets a client without one (or with one that does not
 * verify) in: check conduit_tls_peer_subject() before trusting it. */
#define CONDUIT_TLS_VERIFY_NONE     0
#define CONDUIT_TLS_VERIFY_OPTIONAL 1
#define CONDUIT_TLS_VERIFY_REQUIRED 2
int conduit_tls_set_client_auth(conduit_ctx *ctx, int mode);

/*
 * ALPN protocols, most preferred first, as a NULL-terminated array of
 * names of 1 to 255 bytes (at most 16); NULL or an empty array: no ALPN.
 * A client offers them; a server picks its most preferred one that the
 * client offers and refuses a client that offers ALPN but none of them.
 */
int conduit_tls_set_alpn(conduit_ctx *ctx, const char *const *protocols);

/* Time a handshake may take once the transport underneath is connected
 * (default 30000 ms; 0: no limit).  A handshake still going then fails
 * with CONDUIT_ERR_TIMED_OUT. */
int conduit_tls_set_handshake_timeout(conduit_ctx *ctx, uint32_t ms);

/* ------------------------------------------------------------------ */
/* Resumption                                                           */

/*
 * A resumed handshake (TLS 1.2 abbreviated handshake) skips the
 * certificates, their checks and the key exchange: no public-key operation
 * on either side.
 *
 * Servers resume through session tickets (RFC 5077: the session state,
 * encrypted with AES-GCM under a key made at random for this context and
 * replaced every lifetime, travels with the client) and through a session
 * cache (by session ID, in this context's memory, at most 1000 sessions).
 * Both are on by default.  A ticket or cached session older than the
 * lifetime, or a ticket the server cannot decrypt (another server's key,
 * altered bytes), is not an error: the handshake is simply a full one.
 * Changing what a handshake accepts (identity, trust, client auth, ALPN,
 * resumption, lifetime) starts a new ticket key and cache, so sessions made
 * under the old settings are not resumed: a server that starts to require
 * client certificates does not resume a session of a client without one.
 *
 * Clients resume a session only when asked: take it from a finished
 * client flow with conduit_tls_session_get() and hand it to the context
 * with conduit_tls_set_session(); the next client connections to the same
 * server name and port offer it.  CONDUIT_TLS_RESUME_REMEMBER does this
 * automatically after every client handshake.  (Explicit by default, so
 * that a program measuring or debugging full handshakes gets them, and a
 * session crosses to another context or process only when handed over.)
 * Resuming does not check the server's certificate again (the session
 * vouches for the one checked first), so a session is offered only to a
 * connection made with the same URI options (ca=, cert=, key=, alpn=,
 * insecure-no-verify=) that verifies at least as much as the one it came
 * from: one made with verification turned off is never offered to a
 * verifying client.  The context forgets its sessions when its trust
 * (conduit_tls_set_ca_*()) or its identity (conduit_tls_set_cert_*())
 * changes.  The queries below (peer subject, SANs) work on a resumed flow:
 * they describe the certificate checked when the session was made.
 */
#define CONDUIT_TLS_RESUME_TICKETS  0x1 /* server: issue and take tickets */
#define CONDUIT_TLS_RESUME_CACHE    0x2 /* server: session-ID cache */
#define CONDUIT_TLS_RESUME_REMEMBER 0x4 /* client: keep sessions itself */
#define CONDUIT_TLS_RESUME_DEFAULT                                             \
	(CONDUIT_TLS_RESUME_TICKETS | CONDUIT_TLS_RESUME_CACHE)

/* Which of the above are on (default CONDUIT_TLS_RESUME_DEFAULT; 0: none).
 * Unknown bits are CONDUIT_ERR_INVALID. */
int conduit_tls_set_resumption(conduit_ctx *ctx, unsigned flags);

/* How long a server lets a session be resumed, in seconds (1 to 604800,
 * default 7200): the ticket lifetime, the interval at which the ticket key
 * is replaced (the previous key still opens tickets for one more interval)
 * and the server cache's timeout.  Out of range: CONDUIT_ERR_INVALID. */
int conduit_tls_set_session_lifetime(conduit_ctx *ctx, uint32_t seconds);

/* A client's TLS session, for resuming: a copy owned by the caller. */
typedef struct conduit_tls_session conduit_tls_session;

/*
 * A copy of the session of a client flow whose handshake has finished, in
 * *out (free it with conduit_tls_session_free()).  It remembers the server
 * name and port it was made with.  CONDUIT_ERR_UNSUPPORTED for a server
 * flow or a flow that is not TLS, CONDUIT_ERR_STATE before the handshake
 * has finished, CONDUIT_ERR_NOT_FOUND when the server gave nothing to
 * resume with (no ticket and no session ID), CONDUIT_ERR_NOMEM.
 */
int conduit_tls_session_get(conduit_flow *f, conduit_tls_session **out);

/* Free a session; NULL is a no-op. */
void conduit_tls_session_free(conduit_tls_session *s);

/*
 * Offer s (copied) on the context's next client connections to the server
 * name and port it was made with, until another session for that name and
 * port replaces it or conduit_tls_clear_sessions() runs.  The context keeps
 * at most 16 such sessions (the oldest goes).  A connection whose server
 * name, port or URI options differ, or that verifies more than the
 * connection s came from, does not offer it.  Whether a connection did
 * resume is conduit_tls_resumed(); a server that declines (its ticket key
 * changed, the session expired) gives a full handshake, not an error.
 */
int conduit_tls_set_session(conduit_ctx *ctx, const conduit_tls_session *s);

/* Forget every session the context would offer. */
int conduit_tls_clear_sessions(conduit_ctx *ctx);

/*
 * A session as bytes, to keep it across processes: conduit_tls_session_save
 * writes at most len bytes to buf and the size in *n (with buf NULL: only
 * the size); CONDUIT_ERR_INVALID when len is too small.  The bytes hold
 * the session's master secret: keep them as secret as a private key.
 * conduit_tls_session_load makes a session from such bytes;
 * CONDUIT_ERR_INVALID when they are not one (or come from another build).
 */
int conduit_tls_session_save(const conduit_tls_session *s, void *buf,
                             size_t len, size_t *n);
int conduit_tls_session_load(conduit_tls_session **out, const void *buf,
                             size_t len);

/*
 * INSECURE.  on != 0: clients accept any certificate for any name; the
 * connection is encrypted but the peer is not authenticated, so anyone on
 * the path can read and change it.  For tests and diagnostics only.
 */
int conduit_tls_insecure_no_verify(conduit_ctx *ctx, int on);

/* ------------------------------------------------------------------ */
/* Queries on a TLS flow                                                */

/*
 * These work on the flow a TLS layer returned (conduit_connect() of a tls
 * URI, conduit_accept() on a tls listener, conduit_starttls()).  Strings
 * returned are owned by the flow and valid until it is freed.  Functions
 * returning a string return NULL for NULL, for a flow that is not TLS, and
 * before the handshake has finished; functions returning a status return
 * CONDUIT_ERR_INVALID for NULL arguments, CONDUIT_ERR_UNSUPPORTED for a flow
 * that is not TLS, and CONDUIT_ERR_STATE before the handshake has finished.
 */

/* True (1) when f is a TLS flow of this build, else 0. */
int conduit_tls_is_tls(const conduit_flow *f);

/* The protocol version ("TLSv1.2"). */
const char *conduit_tls_version(conduit_flow *f);
/* The cipher suite ("TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256"). */
const char *conduit_tls_cipher(conduit_flow *f);
/* The negotiated ALPN protocol; NULL also when none was negotiated. */
const char *conduit_tls_alpn(conduit_flow *f);
/* The server name: on a client the name verified (and sent as SNI); on a
 * server the name the client asked for (SNI).  NULL when there is none
 * (a client to an IP literal sends no SNI). */
const char *conduit_tls_servername(conduit_flow *f);

/*
 * The subject of the peer's certificate as text ("CN=client, O=Example"),
 * written to buf (NUL-terminated).  CONDUIT_OK only when the peer presented
 * a certificate and it verified; CONDUIT_ERR_NOT_FOUND when it presented
 * none; CONDUIT_ERR_CERT when it presented one that did not verify (a
 * server with client auth OPTIONAL, or an insecure client);
 * CONDUIT_ERR_INVALID when buf is too small (buf then holds "").
 */
int conduit_tls_peer_subject(conduit_flow *f, char *buf, size_t len);

/*
 * The i-th subject alternative name (from 0) of the peer's certificate,
 * as "DNS:localhost", "IP:127.0.0.1", "IP:::1", "email:a@b.example" or
 * "URI:spiffe://x"; other kinds as "other:TAG".  Iterate from 0 until
 * CONDUIT_ERR_NOT_FOUND.  The same verification rules as
 * conduit_tls_peer_subject() apply.
 */
int conduit_tls_peer_san(conduit_flow *f, size_t i, char *buf, size_t len);

/* 1 when the handshake of f resumed an earlier session (on either side),
 * 0 when it was a full one or has not finished, or f is not TLS. */
int conduit_tls_resumed(conduit_flow *f);

#ifdef __cplusplus
}
#endif
#endif
