/*
 * certs.h - throwaway certificates made in memory with mbedTLS's
 * x509write (EC P-256 keys, SHA-256 signatures, valid from an hour ago for
 * a day), so that no file or tool is needed.  TLS builds only.
 */
#ifndef CONDUIT_TOOLS_CERTS_H
#define CONDUIT_TOOLS_CERTS_H

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/pk.h>

#include <stdbool.h>
#include <stddef.h>

struct tool_cert {
	const char *subject; /* "CN=...,O=..." */
	const char *issuer;  /* the subject again: self-signed */
	unsigned char serial;
	bool ca;        /* basicConstraints cA (path length 0) */
	bool key_usage; /* a keyUsage extension: certificate and CRL signing
	                 * for a CA, digital signature for another */
	/* subjectAltName entries; when there are any, the extended key
	 * usage serverAuth is written too */
	const char *const *dns;
	size_t ndns;
	const unsigned char (*ip4)[4];
	size_t nip4;
};

/* A fresh EC P-256 key in k (initialised by the caller): 0 or an mbedTLS
 * error. */
int tool_key_new(mbedtls_pk_context *k, mbedtls_ctr_drbg_context *drbg);

/* The certificate c describes for subject_key, signed with issuer_key (the
 * same key: self-signed), as PEM in pem: 0 or an mbedTLS error. */
int tool_cert_pem(char *pem, size_t size, mbedtls_pk_context *subject_key,
                  mbedtls_pk_context *issuer_key, const struct tool_cert *c,
                  mbedtls_ctr_drbg_context *drbg);

#endif
