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
 * needs password; it is used once, here, and not kept.  CONDUIT_ERR_CERT
 * when a file cannot be read or parsed, the password is wrong or missing,
 * or the key does not belong to the certificate.  Servers need an identity;
 * clients present it when a server asks for one.
 */
int conduit_tls_set_cert_file(conduit_ctx *ctx, const char *cert_path,
                              const char *key_path, const char *password);

/* The same from PEM in memory (lengths in bytes, no NUL needed). */
int conduit_tls_set_cert_pem(conduit_ctx *ctx, const char *cert_pem,
                             size_t cert_len, const char *key_pem,
                             size_t key_len, const char *password);

/* ------------------------------------------------------------------ */
/* Behaviour                                                            */

/* Client certificates asked of clients by a server (default NONE).
 * OPTIONAL asks but lets a client without one (or with one that does not
 * verify) in: check conduit_tls_peer_subject() before trusting it. */
#define CONDUIT_TLS_VERIFY_NONE 0
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

#ifdef __cplusplus
}
#endif
#endif
