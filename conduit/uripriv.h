/*
 * uripriv.h - private to the files of conduit's URI grammar: uri.c (the
 * parser, and the grammar itself in its opening comment), canonical.c
 * (printing an endpoint as its canonical URI), grammar.c (the tables of
 * transports, layers and their options, and the checks of option values)
 * and redact.c (hiding secrets in URIs that messages show).  The
 * character classes they all use, the shapes that tie a transport's
 * parser to its printer, and the functions one file calls in another.
 */
#ifndef CONDUIT_URIPRIV_H
#define CONDUIT_URIPRIV_H

#include "core.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Characters (ASCII only: the C locale functions are not wanted here)  */

static inline bool is_alpha(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline bool is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static inline int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static inline int lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* RFC 3986 character classes as bitmaps of the ASCII range: every byte of
 * every URI goes through these, so they are table lookups, not searches. */
#define UNRESERVED_LO 0x03ff600000000000ull /* 0-9 - . */
#define UNRESERVED_HI 0x47fffffe87fffffeull /* A-Z _ a-z ~ */
#define SUBDELIM_LO   0x28001fd200000000ull /* ! $ & ' ( ) * + , ; = */
#define GENDELIM_LO   0x8400800800000000ull /* : / ? # */
#define GENDELIM_HI   0x0000000028000001ull /* [ ] @ */

static inline bool in_class(int c, uint64_t lo, uint64_t hi)
{
	if (c < 0 || c >= 128)
		return false;
	return c < 64 ? (lo >> c) & 1 : (hi >> (c - 64)) & 1;
}

static inline bool is_unreserved(int c)
{
	return in_class(c, UNRESERVED_LO, UNRESERVED_HI);
}

static inline bool in_set(int c, const char *set)
{
	return c != '\0' && strchr(set, c) != NULL;
}

static inline bool is_subdelim(int c)
{
	return in_class(c, SUBDELIM_LO, 0);
}

static inline bool is_gendelim(int c)
{
	return in_class(c, GENDELIM_LO, GENDELIM_HI);
}

/* Any byte RFC 3986 allows unencoded in a URI: the union of the three
 * classes, one lookup for the scan that every URI goes through. */
static inline bool is_uri_char(int c)
{
	return in_class(c, UNRESERVED_LO | SUBDELIM_LO | GENDELIM_LO,
	                UNRESERVED_HI | GENDELIM_HI);
}

/* ------------------------------------------------------------------ */
/* Shapes                                                              */

struct pstate;
struct parts;
/* A growing string for printing (canonical.c). */
struct sbuf;

/* How a transport's URIs are laid out: one parser and one printer per
 * shape, so a new transport of an existing shape is one table entry. */
struct cd_shape {
	int (*parse)(struct pstate *ps, const struct parts *pt);
	void (*print)(struct sbuf *sb, const conduit_endpoint *ep);
};

/* uri.c: the shapes of the grammar's transports. */
extern const struct cd_shape cd_shape_hostport;
extern const struct cd_shape cd_shape_path;
extern const struct cd_shape cd_shape_abstract;
extern const struct cd_shape cd_shape_vchan;

/* canonical.c: their printers. */
void cd_uri_print_hostport(struct sbuf *sb, const conduit_endpoint *ep);
void cd_uri_print_path(struct sbuf *sb, const conduit_endpoint *ep);
void cd_uri_print_abstract(struct sbuf *sb, const conduit_endpoint *ep);
void cd_uri_print_vchan(struct sbuf *sb, const conduit_endpoint *ep);

/* ------------------------------------------------------------------ */
/* The tables (grammar.c)                                              */

/* The table entry of an endpoint's transport or layer name: the table's
 * own string (compared by address), or an equal one; NULL if none. */
const struct cd_transport *cd_grammar_transport_of(const char *name);
const struct cd_layer *cd_grammar_layer_of(const char *name);
/* The definition of option key (len bytes) on tp and ep's layers. */
const struct cd_optdef *cd_grammar_option_for(const struct cd_transport *tp,
                                              const conduit_endpoint *ep,
                                              const char *key, size_t len);
/* "tcp, unix, ..." into buf (len bytes); returns buf. */
const char *cd_grammar_transport_list(char *buf, size_t len);

/* ------------------------------------------------------------------ */
/* Redaction (redact.c)                                                */

/* Does an option key (n bytes, maybe percent-encoded) name a secret? */
bool cd_uri_secret_key(const char *k, size_t n);
/* Does uri[at, at + n) touch a password that cd_uri_redact() hides? */
bool cd_uri_touches_password(const char *uri, size_t at, size_t n);

#endif
