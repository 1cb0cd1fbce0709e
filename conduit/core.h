/*
 * core.h - private to the core and the bundled backends: the layout of
 * contexts, endpoints and wait sets, and small helpers shared by them.
 */
#ifndef CONDUIT_CORE_H
#define CONDUIT_CORE_H

#include <conduit/backend.h>
#include <conduit/conduit.h>
#include <stdbool.h>

/* Code a busy loop runs on every call, kept together; and code it never
 * runs, kept out of its way (see conduit_read). */
#define CD_HOT  __attribute__((hot))
#define CD_COLD __attribute__((cold, noinline))

#define CD_MAX_LAYERS   4
#define CD_MAX_BACKENDS 16
#define CD_URI_MAX      8192

struct cd_option {
	char *key;
	char *value;
};

struct conduit_endpoint {
	char *uri;   /* canonical form */
	char *shown; /* uri with secret values hidden; NULL: uri hides none */
	const char *transport; /* static string */
	size_t nlayers;
	const char *layers[CD_MAX_LAYERS]; /* static strings, innermost first */
	enum conduit_host_kind host_kind;
	char *host;    /* "" if none */
	char *zone;    /* "" if none */
	int port;      /* -1 if the transport has none */
	int dest_port; /* connect-to port found by lookup, 0: use port */
	char *path;    /* "" if none */
	size_t nopts;
	struct cd_option *opts;
	size_t naddrs;
	struct conduit_addr *addrs;
};

/* Give ep its canonical URI (taking ownership of uri, which may be NULL
 * after a failed format: CONDUIT_ERR_NOMEM) and the form messages show. */
int cd_endpoint_set_uri(conduit_endpoint *ep, char *uri);

/* The endpoint's URI as every message, event and explanation must show
 * it: secret option values (key=) hidden.  Never NULL. */
const char *cd_endpoint_shown(const conduit_endpoint *ep);

/* Replace the addresses an endpoint carries (copied; addrs may be NULL
 * with n 0 to clear them).  For the resolver and for tests. */
int cd_endpoint_set_addresses(conduit_endpoint *ep,
                              const struct conduit_addr *addrs, size_t n);

/* Write a URI fit for messages: userinfo passwords and the values of
 * secret-looking query options replaced by "****", control bytes escaped,
 * truncated with "..." to fit.  Used whenever an input URI is shown. */
void cd_uri_redact(const char *uri, char *out, size_t outlen);
/* Hide in msg (a NUL-terminated message, rewritten in place: it only
 * gets shorter) every text that cd_uri_redact() would hide in uri, where
 * it appears: a message about something made from uri (a service URI's
 * transport URI, a rule's target) may quote a secret of uri where the
 * redactor of the new text would not see it. */
void cd_uri_scrub(const char *uri, char *msg, size_t cap);
/* A buffer size for cd_uri_redact() that messages use. */
#define CD_SHOWN_URI 512

/* The part of a wait set that belongs to one item and interest bit. */
struct cd_span {
	size_t end;        /* index after its last descriptor */
	uint64_t deadline; /* its own deadline, UINT64_MAX if none */
};

/* ---- Resolver rules (rules.c parses them, resolve.c applies them) ---- */

enum cd_rule_kind {
	CD_RULE_MAP,        /* host pattern -> endpoint URI template */
	CD_RULE_CONNECT_TO, /* host pattern + port -> destination template */
	CD_RULE_SERVICE,    /* scheme name -> port, TLS or not */
};

/*
 * One rule.  Host patterns are lower-case DNS names without a trailing
 * dot: "db.internal" (exact), "*.xen" (one or more whole labels before
 * ".xen"), or "*" (any host; connect-to only).
 */
struct cd_rule {
	enum cd_rule_kind kind;
	char *pattern; /* MAP, CONNECT_TO: host pattern; SERVICE: name */
	int port;      /* CONNECT_TO: port to match, -1 any; SERVICE: port */
	bool tls;      /* SERVICE: the service runs over TLS */
	char *target;  /* MAP: URI template; CONNECT_TO: "HOST:PORT"
	                * template (IPv6 in brackets); SERVICE: NULL */
	char *origin;  /* where it was written: "rules.conf:12" */
	size_t target_col; /* MAP, CONNECT_TO: the target's column */
};

struct cd_ruleset {
	size_t n;
	struct cd_rule *rules;
};

/*
 * Parse rules text (the rules-file syntax, see README) named `name` in
 * messages.  On success *out holds the rules (free with
 * cd_ruleset_free).  On failure returns CONDUIT_ERR_RULES and writes
 * "name:line:column: reason" to err; *out is untouched.  Rules already in
 * `existing` (may be NULL) take part in the tie check, so a rule that
 * conflicts with one loaded earlier is an error naming both places.
 */
int cd_rules_parse(struct cd_ruleset *out, const char *text, size_t len,
                   const char *name, const struct cd_ruleset *existing,
                   char *err, size_t errlen);
void cd_ruleset_free(struct cd_ruleset *rs);
/* Append src's rules to dst (moving them; src is left empty). */
int cd_ruleset_merge(struct cd_ruleset *dst, struct cd_ruleset *src);

/* A rule's template with its placeholders filled ({scheme}, {host},
 * {label} (host's first label), {prefix}, {port}: nothing when port < 0);
 * malloc'd, NULL when out of memory.  The one expansion, for the resolver
 * and for the rules parser's checks at load. */
char *cd_rule_expand(const char *tmpl, const char *scheme, const char *host,
                     const char *prefix, int port);

/* How specific a host pattern is for a host: -1 no match; exact names
 * beat every wildcard; longer suffixes beat shorter ones. */
int cd_pattern_match(const char *pattern, const char *host);

struct cd_registration {
	const struct conduit_backend *be;
	void *state;
};

/* Resolutions conduit_connect() remembers (remember.c). */
#define CD_REMEMBERED 8
struct cd_remembered {
	uint64_t hash;
	size_t len;
	char *uri;            /* the URI as given; NULL: free slot */
	conduit_endpoint *ep; /* what it resolved to */
};

struct conduit_ctx {
	char *error;
	struct cd_ruleset rules;
	uint32_t connect_timeout_ms;
	unsigned uri_options; /* CONDUIT_URI_* a URI may use */
	conduit_lookup_fn lookup;
	void *lookup_arg;
	conduit_observer_fn observer;
	void *observer_arg;
	size_t nbackends;
	struct cd_registration backends[CD_MAX_BACKENDS];
	/* The ctx_process hooks, in registration order, with their state:
	 * conduit_poll() runs them on every turn, so it neither scans every
	 * backend for the few that have one nor follows the registration
	 * to the backend's table for each. */
	size_t nprocs;
	struct cd_proc {
		int (*fn)(void *state);
		void *state;
		const struct conduit_backend *be;
	} procs[CD_MAX_BACKENDS];
	/* reusable buffers of conduit_poll() */
	struct pollfd *pfds;
	size_t pfds_cap;
	struct cd_span *spans;
	size_t spans_cap;
	/* conduit_connect()'s remembered resolutions, and the count of
	 * changes to what resolution depends on (cd_ctx_changed). */
	struct cd_remembered remembered[CD_REMEMBERED];
	unsigned remembered_next; /* the slot to fill next */
	unsigned remembered_last; /* the slot filled last */
	unsigned settings_gen;
};

/*
 * The endpoint conduit_connect() uses for a URI, taken from the context's
 * remembered resolutions or resolved afresh (with the same observer
 * events either way).  The caller owns u->ep until it hands it back with
 * cd_resolve_done(), which remembers it or frees it.
 */
struct cd_use {
	conduit_endpoint *ep;
	char *uri; /* the remembered copy of the URI, NULL if fresh */
	uint64_t hash;
	size_t len;
	unsigned gen;
	unsigned slot; /* where a remembered one came from */
	bool fresh_ok; /* a fresh resolution used only the context's settings */
};
int cd_resolve_use(struct cd_use *u, conduit_ctx *ctx, const char *uri);
void cd_resolve_done(conduit_ctx *ctx, struct cd_use *u, const char *uri);
/* What resolution depends on changed (rules, services, allowed options,
 * the lookup function): forget every remembered resolution. */
void cd_ctx_changed(conduit_ctx *ctx);
/* A test hook: called each time cd_resolve_use() resolves afresh, when
 * something defines it (a test does; the library does not, and the weak
 * reference is then NULL).  The production struct keeps no count. */
void cd_remember_missed(const conduit_ctx *ctx) __attribute__((weak));

/* resolve.c's resolution as conduit_resolve() does it, for remember.c:
 * *system (if not NULL) tells whether the system's service table was
 * asked; announced: the "resolving" event was given already. */
int cd_resolve_fresh(conduit_endpoint **out, conduit_ctx *ctx, const char *uri,
                     bool *system, bool announced);
/* The detail of a "resolved" event: "1 address", or "" for none. */
const char *cd_addr_count(const conduit_endpoint *ep, char buf[64]);

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

/* ---- Text shown to people (text.c) ---- */

/* The length of the printable UTF-8 character at s (n bytes left), or 0
 * when s[0] must be escaped: a control byte, a C1 control, a
 * bidirectional override, or a byte that does not start valid UTF-8. */
size_t cd_text_char(const char *s, size_t n);
/* Write s to out (cap bytes, always terminated) with every byte that
 * cd_text_char() refuses written as "\xHH"; truncated at a character. */
void cd_text_escape(char *out, size_t cap, const char *s);
/* s (malloc'd, taken) as it may be shown: itself when nothing needs
 * escaping, else a new escaped copy (s freed); NULL when out of memory
 * or s is NULL. */
char *cd_text_shown(char *s);
/* s as it may be shown, for the moment: s itself (NULL: "") when nothing
 * needs escaping, else an escaped copy left in *tmp for the caller to
 * free (*tmp is NULL otherwise). */
const char *cd_text_for(const char *s, char **tmp);

/* Store a freshly formatted message in *slot (replacing the old one),
 * escaped as cd_text_shown() does. */
void cd_set_message(char **slot, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* Make sure a host endpoint carries addresses: literals are converted,
 * names looked up (this may block); sets ep's addresses.  A connect-to
 * option is looked up in place of the host, and sets dest_port. */
int cd_lookup(conduit_ctx *ctx, conduit_endpoint *ep);
/* The same for the resolver: messages name the URI it was given too,
 * "resolve GIVEN (ENDPOINT): reason", when given differs from the
 * endpoint's URI. */
int cd_lookup_for(conduit_ctx *ctx, conduit_endpoint *ep, const char *given);

/* For a host transport's listen: CONDUIT_ERR_OPTION, with the message on
 * ctx, when ep carries connect-to (where a connection goes; a listener
 * goes nowhere, and looking the option up would bind the destination's
 * address in place of the host's); else CONDUIT_OK. */
int cd_listen_refuses_connect_to(conduit_ctx *ctx, const conduit_endpoint *ep);

/* Classes of URI options that a context must allow before a URI from
 * outside may use them (see conduit_ctx_allow_uri_options). */
#define CD_OPT_FILE     CONDUIT_URI_FILES
#define CD_OPT_INSECURE CONDUIT_URI_INSECURE
/* The class of an endpoint's option (0: harmless). */
unsigned cd_option_class(const conduit_endpoint *ep, const char *key);

/* ---- The URI grammar's tables (grammar.c) ------------------------
 * Which transports and layers exist, what each transport's URIs carry and
 * which options each allows: the parser, the printer, the resolver and
 * the rules file consult these rather than compare names. */

/* Check a decoded option value.  NULL when it is good, with *canon set to
 * its canonical form (the value itself or buf); else the reason. */
typedef const char *(*cd_optcheck)(const char *v, char *buf, size_t len,
                                   const char **canon);

struct cd_optdef {
	const char *key;
	cd_optcheck check;
	unsigned cls; /* CD_OPT_FILE, CD_OPT_INSECURE */
};

/* How a transport's URIs are parsed and printed (uripriv.h). */
struct cd_shape;

struct cd_transport {
	const char *name; /* the static string endpoints point to */
	const struct cd_shape *shape;
	bool has_host; /* the endpoint has a host (vchan: a domain) */
	bool inet;     /* the host is an Internet host: a DNS name or an IP
	                * address, looked up, and connect-to rules apply */
	bool has_port;
	bool has_path; /* a path or a name (unix, vchan's port name) */
	const struct cd_optdef *opts; /* sorted by key */
	size_t nopts;
};

struct cd_layer {
	const char *name; /* the static string endpoints point to */
	/* The scheme of the layer alone ("tls://") means the layer over
	 * this transport, where a shorthand is taken (the resolver,
	 * conduit_listen); NULL: never. */
	const char *alone_over;
	const struct cd_optdef *opts; /* sorted by key */
	size_t nopts;
};

/* The transport or layer of that name (len bytes, any case); NULL: the
 * grammar has none. */
const struct cd_transport *cd_grammar_transport(const char *name, size_t len);
const struct cd_layer *cd_grammar_layer(const char *name, size_t len);
/* The i-th transport of the grammar; NULL past the last. */
const struct cd_transport *cd_grammar_transport_at(size_t i);
/* What option key is on ep: its transport's or one of its layers'; NULL
 * when ep's URI cannot carry it. */
const struct cd_optdef *cd_grammar_option(const conduit_endpoint *ep,
                                          const char *key);
/* A layer's own option key (len bytes); NULL if it has none such. */
const struct cd_optdef *cd_grammar_layer_option(const struct cd_layer *ly,
                                                const char *key, size_t len);

/* Put a layer of the grammar over ep (outermost) and print ep again.
 * CONDUIT_ERR_SCHEME when ep has it already or has CD_MAX_LAYERS, with
 * the reason in why; CONDUIT_ERR_NOMEM. */
int cd_endpoint_add_layer(conduit_endpoint *ep, const struct cd_layer *ly,
                          char *why, size_t whylen);
/* Give ep the option key=value (decoded), checked and made canonical as
 * the grammar does for a URI, and print ep again.  CONDUIT_ERR_OPTION when
 * ep cannot carry the key, has it already, or the value is bad (the
 * reason in why, the value of a secret-looking key never quoted);
 * CONDUIT_ERR_NOMEM. */
int cd_endpoint_add_option(conduit_endpoint *ep, const char *key,
                           const char *value, char *why, size_t whylen);

/* strdup that reports failure instead of crashing on NULL input. */
char *cd_strdup(const char *s);

/* The backends of this build, NULL-terminated, registered in this order
 * by conduit_ctx_new() (builtin.c: the one file of the core that names
 * a backend). */
extern const struct conduit_backend *const cd_builtin_backends[];

/* Parse a dotted-quad IPv4 address exactly as inet_pton(AF_INET) does
 * (several times faster: literals are converted on every connect).
 * True with the four bytes in out, false for anything else. */
bool cd_ipv4_parse(const char *s, unsigned char out[4]);

/* The one host grammar's rule for numbers: are the n bytes of s labels
 * that are all numbers (decimal, or 0x hex), as inet_aton() and
 * getaddrinfo() would read them as an address (1.2.3, 0x7f.1,
 * 2130706433; one trailing dot ignored)?  Such a host must be a valid
 * dotted quad (cd_ipv4_parse) in a URI, a connect-to value and a rules
 * file alike, never a name handed to the system resolver. */
bool cd_host_numeric(const char *s, size_t n);

/* ---- Private to the URI files and endpoint.c --------------------- */

/* Fill the fields of a fresh endpoint (port -1; absent strings NULL or
 * the endpoint's own "") from a URI: all but
 * uri and addrs.  On failure the message ("URI: reason") is in err and
 * ep may hold partial allocations: conduit_endpoint_free() them. */
int cd_uri_parse(conduit_endpoint *ep, const char *uri, unsigned flags,
                 char *err, size_t errlen);
/* cd_uri_parse() flags: take a layer's scheme alone ("tls://") as that
 * layer over its alone_over transport. */
#define CD_PARSE_LAYER_ALONE 1u
/* conduit_endpoint_parse() with cd_uri_parse() flags. */
int cd_endpoint_parse(conduit_endpoint **out, const char *uri, unsigned flags,
                      char *err, size_t errlen);
/* The canonical URI of an endpoint's fields; malloc'd, NULL when out of
 * memory. */
char *cd_uri_format(const conduit_endpoint *ep);
/* Write "URI: reason" to err (snprintf semantics), the URI redacted and
 * shortened as in parse errors. */
void cd_uri_error(char *err, size_t errlen, const char *uri, const char *fmt,
                  ...) __attribute__((format(printf, 4, 5)));

#endif
