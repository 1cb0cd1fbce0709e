/*
 * conduit.h - the public API of conduit.
 *
 * An application names where it wants to talk with a URI; conduit turns the
 * URI into an endpoint (a plain value) and a backend turns the endpoint into
 * a flow (a byte stream).  The objects:
 *
 *   conduit_ctx       a context: registered backends, options, observer.
 *   conduit_endpoint  an immutable value: layers, transport, logical host,
 *                     port or path as written, options, and (not printed)
 *                     the addresses a lookup found.
 *   conduit_flow      one byte stream.
 *   conduit_listener  a bound, listening endpoint that yields flows.
 *
 * Conventions
 *   - Every function that can fail returns a status from enum conduit_status
 *     (CONDUIT_OK is 0).  Output parameters come first.
 *   - Each object keeps a detail message for its last failure, naming what
 *     failed and why ("connect tcp://[::1]:8443: connection refused"); read
 *     it with conduit_ctx_error(), conduit_flow_error() or
 *     conduit_listener_error().  A failure that happens before an object
 *     exists (a bad URI passed to conduit_connect()) is recorded on the
 *     context.  Passwords in URIs never appear in messages.
 *   - *_free(NULL) is a no-op.  Nothing calls exit() or abort().
 *
 * Non-blocking first
 *   Every operation works on non-blocking descriptors and never sleeps,
 *   except where documented (a host-name lookup through the system resolver,
 *   and the *_wait conveniences).  An operation that cannot proceed returns
 *   CONDUIT_WANT_READ or CONDUIT_WANT_WRITE: call it again once
 *   conduit_poll() reports the object ready for the interest you have
 *   (CONDUIT_POLLIN to read or accept, CONDUIT_POLLOUT to write or finish
 *   connecting).  The "want" says what the transport waits on, which may
 *   differ from the operation (a TLS read may want a write); conduit_poll()
 *   knows this, so poll for what you want to do, not for the "want".
 *
 * Threads
 *   A context and everything made from it (flows, listeners) are used from
 *   one thread at a time.  Different contexts are independent, except that
 *   stacks which are process-wide by nature (lwIP as Debian builds it) can
 *   be attached to one context at a time.  Endpoints are immutable and may
 *   be shared between threads once made.
 *
 * Signals
 *   No conduit call raises SIGPIPE: writes to a closed peer return
 *   CONDUIT_ERR_CLOSED.  Calls interrupted by signals are resumed where that
 *   is correct; conduit never retries close().
 */
#ifndef CONDUIT_CONDUIT_H
#define CONDUIT_CONDUIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CONDUIT_VERSION_MAJOR 0
#define CONDUIT_VERSION_MINOR 1
#define CONDUIT_VERSION_PATCH 0

/*
 * The status list.  One X-macro generates the enum, conduit_strerror() and
 * conduit_status_name(), so they cannot drift apart.  New codes are only
 * ever appended.
 */
#define CONDUIT_STATUS_LIST(X)                                                 \
	X(CONDUIT_OK, "success")                                               \
	X(CONDUIT_WANT_READ, "would block until the transport is readable")    \
	X(CONDUIT_WANT_WRITE, "would block until the transport is writable")   \
	X(CONDUIT_EOF, "end of stream")                                        \
	X(CONDUIT_ERR_INVALID, "invalid argument")                             \
	X(CONDUIT_ERR_NOMEM, "out of memory")                                  \
	X(CONDUIT_ERR_URI, "malformed URI")                                    \
	X(CONDUIT_ERR_SCHEME, "unknown URI scheme")                            \
	X(CONDUIT_ERR_HOST, "invalid host")                                    \
	X(CONDUIT_ERR_PORT, "invalid port")                                    \
	X(CONDUIT_ERR_OPTION, "invalid option")                                \
	X(CONDUIT_ERR_PATH_TOO_LONG, "socket path too long")                   \
	X(CONDUIT_ERR_NO_BACKEND, "no backend for this transport")             \
	X(CONDUIT_ERR_UNSUPPORTED, "not supported on this platform")           \
	X(CONDUIT_ERR_NOT_FOUND, "no such socket")                             \
	X(CONDUIT_ERR_NOT_SOCKET, "file exists and is not a socket")           \
	X(CONDUIT_ERR_ADDR_IN_USE, "address already in use")                   \
	X(CONDUIT_ERR_ADDR_UNAVAILABLE, "address not available")               \
	X(CONDUIT_ERR_PERMISSION, "permission denied")                         \
	X(CONDUIT_ERR_RESOLVE, "name resolution failed")                       \
	X(CONDUIT_ERR_REFUSED, "connection refused")                           \
	X(CONDUIT_ERR_UNREACHABLE, "network or host unreachable")              \
	X(CONDUIT_ERR_TIMED_OUT, "timed out")                                  \
	X(CONDUIT_ERR_RESET, "connection reset by peer")                       \
	X(CONDUIT_ERR_CLOSED, "peer closed the connection")                    \
	X(CONDUIT_ERR_TOO_MANY_FILES, "too many open files")                   \
	X(CONDUIT_ERR_STATE, "operation not valid in this state")              \
	X(CONDUIT_ERR_SYSTEM, "system error")                                  \
	X(CONDUIT_ERR_RULES, "invalid rules")                                  \
	X(CONDUIT_ERR_TLS, "TLS handshake failed")                             \
	X(CONDUIT_ERR_CERT, "certificate verification failed")                 \
	X(CONDUIT_ERR_TRUNCATED, "peer closed without TLS close_notify")

enum conduit_status {
#define CONDUIT_X_ENUM(name, text) name,
	CONDUIT_STATUS_LIST(CONDUIT_X_ENUM)
#undef CONDUIT_X_ENUM
	    CONDUIT_STATUS_COUNT
};

/* A fixed English text for a status; "unknown status" for others. */
const char *conduit_strerror(int status);
/* The enumerator's name ("CONDUIT_ERR_REFUSED"); "?" for unknown values. */
const char *conduit_status_name(int status);

/* Interest and readiness bits for conduit_poll(). */
#define CONDUIT_POLLIN  1u
#define CONDUIT_POLLOUT 2u

/* Directions for conduit_shutdown(). */
#define CONDUIT_SHUT_RD   1u
#define CONDUIT_SHUT_WR   2u
#define CONDUIT_SHUT_RDWR 3u

typedef struct conduit_ctx conduit_ctx;
typedef struct conduit_endpoint conduit_endpoint;
typedef struct conduit_flow conduit_flow;
typedef struct conduit_listener conduit_listener;

/* ------------------------------------------------------------------ */
/* Context                                                             */

/*
 * Make a context with every backend this build contains registered (host
 * sockets for unix and tcp on Unix systems).  Returns CONDUIT_OK or
 * CONDUIT_ERR_NOMEM.
 */
int conduit_ctx_new(conduit_ctx **out);

/* Free the context.  All its flows and listeners must be freed first. */
void conduit_ctx_free(conduit_ctx *ctx);

/* The detail message of the context's last failure ("" if none). */
const char *conduit_ctx_error(const conduit_ctx *ctx);

/*
 * Default connect timeout in milliseconds for flows made by this context
 * (0, the default, means none; the *_wait calls also take their own).
 * A flow that has not connected by then fails with CONDUIT_ERR_TIMED_OUT.
 */
void conduit_ctx_set_connect_timeout(conduit_ctx *ctx, uint32_t ms);

/* The names of the registered backends, for diagnostics. */
size_t conduit_ctx_backend_count(const conduit_ctx *ctx);
const char *conduit_ctx_backend_name(const conduit_ctx *ctx, size_t i);

/*
 * Observer: called synchronously at each phase of a flow's life.
 *
 * Layered flows (tls+tcp://, tls+unix://, a tls listener, StartTLS) are one
 * flow to the observer, the one the application holds, and each phase is
 * reported once, under the URI the application knows (the tls+ one):
 *   - connecting and connected come from the transport as it connects,
 *     under the endpoint's URI (tls+ included), before the layered flow
 *     exists or while it drives the transport: ev->flow is then the
 *     transport's flow, which the application never holds;
 *   - accepted, tls-handshaking, tls-handshaked, failed and closed are
 *     the layered flow's, with ev->flow the flow the application holds
 *     (accepted comes before tls-handshaking);
 *   - a transport that fails under a layer is reported once, as the
 *     layered flow's "failed", its detail giving the transport's reason
 *     ("connect tls+tcp://...: connection refused"); a transport that
 *     fails before conduit_connect() returns (no flow) is reported once
 *     with ev->flow NULL.
 */
enum conduit_phase {
	CONDUIT_PHASE_RESOLVING,  /* uri: the URI as given */
	CONDUIT_PHASE_RESOLVED,   /* uri: the endpoint; status on failure */
	CONDUIT_PHASE_CONNECTING, /* uri: endpoint; detail: address tried */
	CONDUIT_PHASE_CONNECTED,  /* uri: endpoint; detail: address used */
	CONDUIT_PHASE_ACCEPTED,   /* uri: listener; detail: peer */
	CONDUIT_PHASE_FAILED,     /* status and detail: what went wrong */
	CONDUIT_PHASE_CLOSED,     /* flow closed or freed */
	CONDUIT_PHASE_TLS_HANDSHAKING, /* uri: endpoint; detail: "client" or
	                                * "server" */
	CONDUIT_PHASE_TLS_HANDSHAKED   /* uri: endpoint; detail: version,
	                                * suite and ALPN protocol */
};

struct conduit_event {
	enum conduit_phase phase;
	int status;         /* CONDUIT_OK or the failure */
	const char *uri;    /* never NULL; passwords removed */
	const char *detail; /* never NULL; may be "" */
	conduit_flow *flow; /* NULL while resolving */
};

typedef void (*conduit_observer_fn)(void *arg, const struct conduit_event *ev);

/* Set (or with fn NULL, clear) the context's observer. */
void conduit_ctx_set_observer(conduit_ctx *ctx, conduit_observer_fn fn,
                              void *arg);

/* Name of a phase ("connecting"). */
const char *conduit_phase_name(enum conduit_phase phase);

/* ------------------------------------------------------------------ */
/* Endpoints                                                           */

/*
 * URI grammar (RFC 3986 syntax; see README for the full table):
 *
 *   tcp://HOST:PORT            HOST: a DNS name, IPv4, or [IPv6] with an
 *   tcp://[::1]:8080           optional zone ([fe80::1%25eth0]); PORT
 *   tcp://:0                   0-65535.  An empty host listens on every
 *                              address (connecting needs a host).
 *   unix:///abs/path.sock      a path socket (percent-decoded); relative
 *   unix:rel/path.sock         paths are allowed in the rootless form
 *   unix-abstract://NAME       Linux abstract socket (name percent-decoded)
 *   LAYER+TRANSPORT://...      layers over a transport, e.g. tls+unix:///p
 *
 * Schemes are case-insensitive.  Query options (?key=value&...) are checked
 * against the transport's list; an unknown option is an error.  Options:
 *   tcp:  nodelay=0|1 (default 1), keepalive=SECONDS, source=IP (connect
 *         from this address)
 *   tcp:  connect-to=HOST:PORT (connect there; the name stays for TLS)
 *   unix: mode=OCTAL (permissions of a listening socket file)
 *   tls layer: servername=NAME, alpn=P1,P2, ca=FILE, cert=FILE, key=FILE,
 *         insecure-no-verify=0|1 (file and insecure options: see
 *         conduit_ctx_allow_uri_options)
 *
 * Parsing never blocks and never touches the network.  The endpoint prints
 * back as a canonical URI (conduit_endpoint_uri()) that parses to an equal
 * endpoint.  On failure *out is NULL and, if err is not NULL, a message
 * naming the URI and the reason is written to err (truncated to errlen).
 */
int conduit_endpoint_parse(conduit_endpoint **out, const char *uri, char *err,
                           size_t errlen);

/* A copy (including found addresses); NULL when out of memory. */
conduit_endpoint *conduit_endpoint_dup(const conduit_endpoint *ep);
void conduit_endpoint_free(conduit_endpoint *ep);

/* True when both describe the same endpoint (found addresses ignored). */
int conduit_endpoint_equal(const conduit_endpoint *a,
                           const conduit_endpoint *b);

/* The canonical URI; owned by the endpoint. */
const char *conduit_endpoint_uri(const conduit_endpoint *ep);

/* "tcp", "unix", "unix-abstract", ... */
const char *conduit_endpoint_transport(const conduit_endpoint *ep);

/* Layers, innermost first ("tls"); count is 0 for a bare transport. */
size_t conduit_endpoint_layer_count(const conduit_endpoint *ep);
const char *conduit_endpoint_layer(const conduit_endpoint *ep, size_t i);

enum conduit_host_kind {
	CONDUIT_HOST_NONE, /* no host (unix paths, tcp listen-any) */
	CONDUIT_HOST_NAME, /* a DNS name, lower-cased */
	CONDUIT_HOST_IPV4,
	CONDUIT_HOST_IPV6
};
enum conduit_host_kind conduit_endpoint_host_kind(const conduit_endpoint *ep);
/* Host as written, decoded, without brackets or zone; "" if none. */
const char *conduit_endpoint_host(const conduit_endpoint *ep);
/* IPv6 zone ("eth0"), or "" if none. */
const char *conduit_endpoint_zone(const conduit_endpoint *ep);
/* Port 0-65535, or -1 for transports without ports. */
int conduit_endpoint_port(const conduit_endpoint *ep);
/* Socket path or abstract name, decoded; "" if none. */
const char *conduit_endpoint_path(const conduit_endpoint *ep);
/* Value of a query option, or NULL when absent. */
const char *conduit_endpoint_option(const conduit_endpoint *ep,
                                    const char *key);

/*
 * An address found by a lookup.  Not part of the printed URI.
 */
struct conduit_addr {
	int family;        /* CONDUIT_AF_INET or CONDUIT_AF_INET6 */
	uint8_t bytes[16]; /* network order; 4 used for IPv4 */
	uint32_t scope;    /* IPv6 scope (interface index), else 0 */
};
#define CONDUIT_AF_INET  4
#define CONDUIT_AF_INET6 6

size_t conduit_endpoint_address_count(const conduit_endpoint *ep);
const struct conduit_addr *conduit_endpoint_address(const conduit_endpoint *ep,
                                                    size_t i);
/* Format an address as text ("::1", "127.0.0.1"); returns buf. */
const char *conduit_addr_format(const struct conduit_addr *a, char *buf,
                                size_t len);

/*
 * Resolve a URI into an endpoint, in this order (no step sees its own
 * output, and no rule is applied to a rule's result):
 *   1. the scheme: a transport URI (tcp://, tls+unix://, ...) is parsed
 *      as it is; tls:// means tls+tcp://; any other scheme is a service
 *      (https, imaps, ...): the service table gives the port when the URI
 *      has none and says whether TLS goes on top; the URI's path, query
 *      and fragment belong to the application and are ignored;
 *   2. host rules (map): the most specific rule for the host rewrites the
 *      endpoint; TLS asked for by the service is kept (never doubled) and
 *      verifies the name as written (servername=);
 *   3. connect-to rules (tcp only, when no map rule applied): only the
 *      destination changes (connect-to=), never the name TLS checks;
 *   4. addresses: for a DNS name this calls the system resolver
 *      (getaddrinfo) and MAY BLOCK; IP literals, paths, abstract names,
 *      rules and services never block.  Every address found is kept.
 * Failures are recorded on the context.
 */
int conduit_resolve(conduit_endpoint **out, conduit_ctx *ctx, const char *uri);

/*
 * The same, and an account of each step: which service, rule and lookup
 * produced which part of the endpoint.  *explain is set (also on failure,
 * holding the steps so far) and is freed with conduit_explain_free().
 * Steps are lines "what: detail"; passwords never appear in them.
 */
typedef struct conduit_explain conduit_explain;
int conduit_resolve_explain(conduit_endpoint **out, conduit_explain **explain,
                            conduit_ctx *ctx, const char *uri);
size_t conduit_explain_count(const conduit_explain *x);
const char *conduit_explain_step(const conduit_explain *x, size_t i);
void conduit_explain_free(conduit_explain *x);

/*
 * URIs may come from users or the network.  Query options that name files
 * (ca=, cert=, key=) or weaken security (insecure-*) are refused in a URI
 * given to conduit_resolve() / conduit_connect() (CONDUIT_ERR_OPTION)
 * unless the context allows that class here.  Rules files are trusted.
 */
#define CONDUIT_URI_FILES    1u
#define CONDUIT_URI_INSECURE 2u
void conduit_ctx_allow_uri_options(conduit_ctx *ctx, unsigned classes);

/*
 * Name lookup.  By default a DNS name is looked up with the system
 * resolver (getaddrinfo).  A context may use its own lookup instead: a
 * unikernel's DNS client, a static table, a test.  fn stores up to cap
 * addresses in addrs and their count in *n, and returns CONDUIT_OK or
 * CONDUIT_ERR_RESOLVE (or _NOMEM).  fn NULL restores the default.
 * Duplicates are removed (order kept).  Any other status, CONDUIT_OK
 * with no address, *n > cap, or a family other than CONDUIT_AF_INET/6
 * is reported as CONDUIT_ERR_RESOLVE naming the host.
 */
typedef int (*conduit_lookup_fn)(void *arg, const char *host,
                                 struct conduit_addr *addrs, size_t cap,
                                 size_t *n);
void conduit_ctx_set_lookup(conduit_ctx *ctx, conduit_lookup_fn fn, void *arg);

/*
 * Rules (syntax in README, "Rules files").  Loading a file or text adds
 * its rules to the context's; a bad file is rejected whole with
 * CONDUIT_ERR_RULES and "file:line:column: reason" on the context, and the
 * context keeps the rules it had.  A rule that ties with one already
 * loaded (same pattern) is such an error too, naming both places.
 */
int conduit_ctx_load_rules(conduit_ctx *ctx, const char *path);
int conduit_ctx_add_rules(conduit_ctx *ctx, const char *text, const char *name);
/* A service entry from code: the same as "service NAME PORT [tls]". */
int conduit_ctx_add_service(conduit_ctx *ctx, const char *name, uint16_t port,
                            int tls);

/* ------------------------------------------------------------------ */
/* Flows                                                               */

/*
 * Start connecting to a URI (resolving it first, which may block for a DNS
 * name, see conduit_resolve()).  On CONDUIT_OK *out is a flow that is
 * connected or still connecting; connecting finishes inside
 * conduit_handshake(), conduit_read() or conduit_write().  A host with
 * several addresses is raced in the manner of RFC 8305: families
 * alternate (IPv6 first), a new attempt starts every 250 ms or as soon as
 * one fails, the first to connect wins and the others are closed.  On
 * failure *out is NULL and the message is on the context.
 *
 * The context remembers a few URIs whose resolution depends only on the
 * URI and its own settings (IP literals, unix and vchan URIs, and names
 * that rules map to those; never a looked-up name, an IPv6 zone, a port
 * from the system's service table, or a URI carrying anything messages
 * would hide, such as a password or a key option), so connecting to one
 * again skips parsing and resolving; the observer sees the same events.
 * Any change to rules, services, allowed URI options or the lookup
 * function forgets them.
 */
int conduit_connect(conduit_flow **out, conduit_ctx *ctx, const char *uri);
int conduit_connect_endpoint(conduit_flow **out, conduit_ctx *ctx,
                             const conduit_endpoint *ep);

/*
 * Drive a flow's establishment (TCP connect, later TLS handshakes).
 * Returns CONDUIT_OK once established, CONDUIT_WANT_* while in progress
 * (poll for CONDUIT_POLLOUT), or the failure (message on the flow).
 */
int conduit_handshake(conduit_flow *f);

/*
 * Read up to len bytes.  CONDUIT_OK with *nread > 0; CONDUIT_EOF when the
 * peer has finished sending (clean end of stream); CONDUIT_WANT_* when
 * nothing is available yet; or an error.
 */
int conduit_read(conduit_flow *f, void *buf, size_t len, size_t *nread);

/*
 * Write up to len bytes.  A short write (*nwritten < len) is a normal
 * result; CONDUIT_WANT_* when nothing could be written.  Never raises
 * SIGPIPE: a peer that has gone gives CONDUIT_ERR_CLOSED or _RESET.
 */
int conduit_write(conduit_flow *f, const void *buf, size_t len,
                  size_t *nwritten);

/* One buffer of a gather write. */
struct conduit_iov {
	const void *base;
	size_t len;
};
/* Gather write: the buffers in order, as one write would; short writes as
 * for conduit_write(). */
int conduit_writev(conduit_flow *f, const struct conduit_iov *iov,
                   size_t iovcnt, size_t *nwritten);

/*
 * Shut down one or both directions (CONDUIT_SHUT_WR sends end of stream
 * to the peer, which still may send).  Writing after SHUT_WR or reading
 * after SHUT_RD gives CONDUIT_ERR_STATE.
 */
int conduit_shutdown(conduit_flow *f, unsigned how);

/*
 * Close gracefully (layers may need to send a last record: CONDUIT_WANT_*).
 * Then, or on any error, call conduit_flow_free().
 */
int conduit_close(conduit_flow *f);

/* Release the flow and everything it holds; abortive if not closed. */
void conduit_flow_free(conduit_flow *f);

/* The detail message of the flow's last failure ("" if none). */
const char *conduit_flow_error(const conduit_flow *f);

/* The endpoint URI this flow was made for (accepted flows: the peer). */
const char *conduit_flow_uri(const conduit_flow *f);

/* Bytes moved through this flow by the application. */
struct conduit_flow_stats {
	uint64_t bytes_read;
	uint64_t bytes_written;
};
void conduit_flow_stats(const conduit_flow *f, struct conduit_flow_stats *st);

/* Credentials of a Unix-socket peer; -1 where the OS does not tell. */
struct conduit_peer_cred {
	int64_t uid;
	int64_t gid;
	int64_t pid;
};
/* CONDUIT_OK, or CONDUIT_ERR_UNSUPPORTED for flows without credentials. */
int conduit_flow_peer_cred(conduit_flow *f, struct conduit_peer_cred *cred);

/*
 * The flow's transport descriptor for programs with their own event loop
 * (-1 for flows without one, such as lwIP).  Do not read, write or close
 * it; use conduit_wait_fds() to learn what to wait for.
 */
int conduit_flow_fd(const conduit_flow *f);

/*
 * StartTLS: put a layer (today "tls") over an open flow, after plaintext
 * has been exchanged on it, in either role whoever connected: role is
 * CONDUIT_ROLE_CLIENT or CONDUIT_ROLE_SERVER; servername (client) is the
 * name the peer's certificate must carry, NULL for the flow's host.  On
 * CONDUIT_OK *f is the new flow, which owns the old one (free only the
 * new); the handshake runs in conduit_handshake() or the first read or
 * write.  Refused with CONDUIT_ERR_STATE, *f untouched, while plaintext
 * the application has not read is waiting on the flow: bytes a peer sent
 * before the handshake must never be taken as protected (the
 * command-injection bug class of CVE-2011-0411).  CONDUIT_ERR_NO_BACKEND
 * when the context has no TLS layer.
 */
#define CONDUIT_ROLE_CLIENT 0
#define CONDUIT_ROLE_SERVER 1
int conduit_starttls(conduit_flow **f, int role, const char *servername);

/* ------------------------------------------------------------------ */
/* Listeners                                                           */

/*
 * Bind and listen.  For unix paths an existing file is replaced only if it
 * is a socket nobody listens on; any other file is left alone
 * (CONDUIT_ERR_NOT_SOCKET).  For tcp port 0 the system picks a port:
 * conduit_listener_uri() tells which.
 */
int conduit_listen(conduit_listener **out, conduit_ctx *ctx, const char *uri);
int conduit_listen_endpoint(conduit_listener **out, conduit_ctx *ctx,
                            const conduit_endpoint *ep);

/*
 * Accept one connection: CONDUIT_OK and a flow, CONDUIT_WANT_READ when
 * none is waiting, or an error.  After CONDUIT_ERR_TOO_MANY_FILES the
 * listener backs off for a moment (it reports WANT_READ and conduit_poll()
 * sleeps rather than spinning).
 */
int conduit_accept(conduit_flow **out, conduit_listener *l);

/* The bound URI (real port; path as given). */
const char *conduit_listener_uri(const conduit_listener *l);
const char *conduit_listener_error(const conduit_listener *l);
/* Stops listening; a unix socket file it made is removed. */
void conduit_listener_free(conduit_listener *l);

/* ------------------------------------------------------------------ */
/* Waiting                                                             */

struct conduit_pollitem {
	conduit_flow *flow; /* one of flow or listener */
	conduit_listener *listener;
	unsigned events;  /* CONDUIT_POLLIN | CONDUIT_POLLOUT */
	unsigned revents; /* out: a subset of events */
};

/*
 * Wait until one of the items is ready for one of its events, or timeout_ms
 * passes (-1: no limit; 0: do not sleep).  Pending work that no descriptor
 * announces (buffered bytes, polled stacks) counts as ready and is done
 * first.  "Ready" means the operation will not just return the same WANT:
 * it may make progress, fail, or report end of stream.  Stores the number
 * of ready items in *nready (0 on timeout).  Interrupted by a signal, it
 * goes on waiting.  An item with neither or both of flow and listener, or
 * with other event bits, is CONDUIT_ERR_INVALID: the items before it get
 * revents 0 and those after it are untouched (the backends' pending work,
 * which any call may do, may have run).
 */
int conduit_poll(conduit_ctx *ctx, struct conduit_pollitem *items, size_t n,
                 int timeout_ms, size_t *nready);

/*
 * Event-loop integration without conduit_poll().  conduit_wait_fds() fills
 * fds (struct pollfd-compatible: fd, events with POLLIN/POLLOUT) with what
 * the items wait on, sets *nfds (if more than cap are needed, CONDUIT_ERR_
 * INVALID and *nfds says how many), and *timeout_ms to the time until the
 * nearest deadline (-1 none, 0 when something is ready now).  After your
 * loop wakes, call conduit_process() to do pending work, then retry the
 * operations.
 */
struct pollfd;
int conduit_wait_fds(conduit_ctx *ctx, struct conduit_pollitem *items, size_t n,
                     struct pollfd *fds, size_t cap, size_t *nfds,
                     int *timeout_ms);
int conduit_process(conduit_ctx *ctx);

/* ------------------------------------------------------------------ */
/* Blocking conveniences (timeout_ms -1 means no limit)                */

int conduit_connect_wait(conduit_flow **out, conduit_ctx *ctx, const char *uri,
                         int timeout_ms);
int conduit_accept_wait(conduit_flow **out, conduit_listener *l,
                        int timeout_ms);
/* Read at least one byte (or EOF / error). */
int conduit_read_wait(conduit_flow *f, void *buf, size_t len, size_t *nread,
                      int timeout_ms);
/* Write all len bytes; *nwritten says how many went on error. */
int conduit_write_all(conduit_flow *f, const void *buf, size_t len,
                      size_t *nwritten, int timeout_ms);
int conduit_close_wait(conduit_flow *f, int timeout_ms);

#ifdef __cplusplus
}
#endif
#endif
