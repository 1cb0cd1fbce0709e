/*
 * core.h - private to the core and the bundled backends: the layout of
 * contexts, endpoints and wait sets, and small helpers shared by them.
 */
#ifndef CONDUIT_CORE_H
#define CONDUIT_CORE_H

#include <conduit/backend.h>
#include <conduit/conduit.h>
#include <stdbool.h>

#define CD_MAX_LAYERS 4
#define CD_MAX_BACKENDS 16
#define CD_URI_MAX 8192

struct cd_option {
	char *key;
	char *value;
};

struct conduit_endpoint {
	char *uri; /* canonical form */
	const char *transport; /* static string */
	size_t nlayers;
	const char *layers[CD_MAX_LAYERS]; /* static strings, innermost first */
	enum conduit_host_kind host_kind;
	char *host; /* "" if none */
	char *zone; /* "" if none */
	int port;   /* -1 if the transport has none */
	char *path; /* "" if none */
	size_t nopts;
	struct cd_option *opts;
	size_t naddrs;
	struct conduit_addr *addrs;
};

/* Replace the addresses an endpoint carries (copied; addrs may be NULL
 * with n 0 to clear them).  For the resolver and for tests. */
int cd_endpoint_set_addresses(conduit_endpoint *ep,
                              const struct conduit_addr *addrs, size_t n);

/* Write a URI fit for messages: userinfo passwords and the values of
 * secret-looking query options replaced by "****", control bytes escaped,
 * truncated with "..." to fit.  Used whenever an input URI is shown. */
void cd_uri_redact(const char *uri, char *out, size_t outlen);

/* The part of a wait set that belongs to one item and interest bit. */
struct cd_span {
	size_t end;        /* index after its last descriptor */
	uint64_t deadline; /* its own deadline, UINT64_MAX if none */
};

struct cd_registration {
	const struct conduit_backend *be;
	void *state;
};

struct conduit_ctx {
	char *error;
	uint32_t connect_timeout_ms;
	conduit_observer_fn observer;
	void *observer_arg;
	size_t nbackends;
	struct cd_registration backends[CD_MAX_BACKENDS];
	/* reusable buffers of conduit_poll() */
	struct pollfd *pfds;
	size_t pfds_cap;
	struct cd_span *spans;
	size_t spans_cap;
};

/* Find the backend serving a transport or a layer; NULL if none. */
const struct cd_registration *cd_find_transport(const conduit_ctx *ctx,
                                                const char *name);
const struct cd_registration *cd_find_layer(const conduit_ctx *ctx,
                                            const char *name);

struct conduit_waitset {
	struct pollfd *fds;
	size_t nfds;
	size_t cap;
	bool grow; /* may realloc fds */
	bool overflow;
	uint64_t deadline; /* UINT64_MAX: none */
};

/* Store a freshly formatted message in *slot (replacing the old one). */
void cd_set_message(char **slot, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

/* Make sure a host endpoint carries addresses: literals are converted,
 * names looked up (this may block); sets ep's addresses. */
int cd_lookup(conduit_ctx *ctx, conduit_endpoint *ep);

/* strdup that reports failure instead of crashing on NULL input. */
char *cd_strdup(const char *s);

/* Built-in backends of this build (registered by conduit_ctx_new). */
#ifdef CONDUIT_HAVE_UNIX
extern const struct conduit_backend cd_backend_unix;
#endif
#ifdef CONDUIT_HAVE_TCP
extern const struct conduit_backend cd_backend_tcp;
#endif

/* ---- Private to uri.c and endpoint.c ---------------------------- */

/* Fill the fields of a zeroed endpoint (port -1) from a URI: all but
 * uri and addrs.  On failure the message ("URI: reason") is in err and
 * ep may hold partial allocations: conduit_endpoint_free() them. */
int cd_uri_parse(conduit_endpoint *ep, const char *uri, char *err,
                 size_t errlen);
/* The canonical URI of an endpoint's fields; malloc'd, NULL when out of
 * memory. */
char *cd_uri_format(const conduit_endpoint *ep);
/* Write "URI: reason" to err (snprintf semantics), the URI redacted and
 * shortened as in parse errors. */
void cd_uri_error(char *err, size_t errlen, const char *uri, const char *fmt,
                  ...) __attribute__((format(printf, 4, 5)));

#endif
