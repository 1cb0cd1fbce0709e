/*
 * backend.h - the interface between conduit's core and its backends.
 *
 * A backend is a const table (struct conduit_backend) registered on a
 * context.  It serves transports ("tcp", "unix") by making flows and
 * listeners, or layers ("tls") by wrapping an inner flow.  A flow or
 * listener is the backend's own struct with struct conduit_flow (or
 * struct conduit_listener) as its first member, so the core can hold a
 * pointer to the base and the backend can cast back.
 *
 * The core owns the parts every flow shares (error message, counters,
 * closed/shut-down state) and calls the ops only in valid states: ops need
 * not re-check arguments the core has checked.
 */
#ifndef CONDUIT_BACKEND_H
#define CONDUIT_BACKEND_H

#include <conduit/conduit.h>
#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * What an object waits on: descriptors with events, a deadline, or
 * "ready now".  Passed to the ops' wait functions, which add to it.
 */
struct conduit_waitset;

/* Wait for fd to become readable / writable (CONDUIT_POLLIN/OUT bits).
 * Returns CONDUIT_OK or CONDUIT_ERR_NOMEM. */
int conduit_waitset_fd(struct conduit_waitset *ws, int fd, unsigned events);
/* Wake no later than at_ms on the conduit_now_ms() clock. */
void conduit_waitset_deadline(struct conduit_waitset *ws, uint64_t at_ms);

/* Milliseconds on a monotonic clock (the platform's). */
uint64_t conduit_now_ms(void);

struct conduit_flow_ops {
	const char *name;
	/* Finish establishment; OK, WANT_* or an error (set with
	 * conduit_flow_fail()).  Called until it returns OK. */
	int (*handshake)(conduit_flow *f);
	int (*read)(conduit_flow *f, void *buf, size_t len, size_t *nread);
	int (*writev)(conduit_flow *f, const struct conduit_iov *iov,
	              size_t iovcnt, size_t *nwritten);
	int (*shutdown)(conduit_flow *f, unsigned how);
	/* Graceful close; may want.  NULL: nothing to do. */
	int (*close)(conduit_flow *f);
	/* Free everything, including the struct itself. */
	void (*destroy)(conduit_flow *f);
	/* Add what an operation with this interest waits on. */
	void (*wait)(conduit_flow *f, unsigned interest,
	             struct conduit_waitset *ws);
	/* The subset of interest that is ready without waiting (buffered
	 * data, a known error).  NULL: nothing is ever pending. */
	unsigned (*pending)(conduit_flow *f, unsigned interest);
	/* Optional queries. */
	int (*peer_cred)(conduit_flow *f, struct conduit_peer_cred *cred);
	int (*fd)(const conduit_flow *f);
	/* Bytes received but not yet read by the application (for
	 * StartTLS, which must not start over unread plaintext).  NULL:
	 * the flow cannot tell, and StartTLS refuses it. */
	int (*unread)(conduit_flow *f, size_t *n);
};

/* Flow state bits kept by the core. */
#define CONDUIT_FLOW_ESTABLISHED 1u
#define CONDUIT_FLOW_SHUT_RD     2u
#define CONDUIT_FLOW_SHUT_WR     4u
#define CONDUIT_FLOW_CLOSED      8u
#define CONDUIT_FLOW_FAILED      16u

struct conduit_flow {
	const struct conduit_flow_ops *ops;
	conduit_ctx *ctx;
	char *uri;   /* printable, password-free; owned, or in the backend's
	              * buffer given to conduit_flow_init_in() */
	char *error; /* last failure; owned, NULL if none */
	uint64_t bytes_read;
	uint64_t bytes_written;
	unsigned state;
	int failure; /* status of a permanent failure, else CONDUIT_OK */
};

/* Initialise the base of a new flow; uri is copied.  CONDUIT_OK or
 * CONDUIT_ERR_NOMEM. */
int conduit_flow_init(conduit_flow *f, const struct conduit_flow_ops *ops,
                      conduit_ctx *ctx, const char *uri);
/* The same, keeping the URI in buf (cap bytes, part of the backend's own
 * flow, living as long as it) when it fits and has nothing to hide: a
 * backend that makes a flow for every connection saves an allocation. */
int conduit_flow_init_in(conduit_flow *f, const struct conduit_flow_ops *ops,
                         conduit_ctx *ctx, const char *uri, char *buf,
                         size_t cap);
/* Release what conduit_flow_init() allocated (for destroy ops). */
void conduit_flow_fini(conduit_flow *f);

/* Record a failure message on an object; returns status.  Printf-style. */
int conduit_flow_fail(conduit_flow *f, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int conduit_listener_fail(conduit_listener *l, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int conduit_ctx_fail(conduit_ctx *ctx, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* True when the context has an observer: build event details only then. */
int conduit_observed(const conduit_ctx *ctx);

/* Report a phase to the context's observer (no-op without one). */
void conduit_emit(conduit_ctx *ctx, enum conduit_phase phase, int status,
                  const char *uri, const char *detail, conduit_flow *f);

/* Map an errno value to a status. */
int conduit_status_from_errno(int err);

struct conduit_listener_ops {
	const char *name;
	/* OK with *out, WANT_READ, or an error (conduit_listener_fail()). */
	int (*accept)(conduit_listener *l, conduit_flow **out);
	void (*destroy)(conduit_listener *l);
	void (*wait)(conduit_listener *l, struct conduit_waitset *ws);
	unsigned (*pending)(conduit_listener *l);
};

struct conduit_listener {
	const struct conduit_listener_ops *ops;
	conduit_ctx *ctx;
	char *uri; /* bound URI; owned */
	char *error;
};

int conduit_listener_init(conduit_listener *l,
                          const struct conduit_listener_ops *ops,
                          conduit_ctx *ctx, const char *uri);
void conduit_listener_fini(conduit_listener *l);

struct conduit_backend {
	const char *name;
	/* NULL-terminated names of the transports it serves, or NULL. */
	const char *const *transports;
	/* NULL-terminated names of the layers it provides, or NULL. */
	const char *const *layers;
	/* Transports: make a flow (connected or connecting). */
	int (*connect)(void *state, conduit_ctx *ctx,
	               const conduit_endpoint *ep, conduit_flow **out);
	int (*listen)(void *state, conduit_ctx *ctx, const conduit_endpoint *ep,
	              conduit_listener **out);
	/* Layers: wrap inner.  On success the new flow owns inner; on
	 * failure inner is left to the caller, untouched (StartTLS gives it
	 * back to the application), and the message is on ctx.  inner NULL
	 * (before a listener is bound): only check that a flow could be
	 * made for ep as is_server says, and return CONDUIT_OK with *out
	 * NULL, or the failure with its message on ctx. */
	int (*wrap)(void *state, conduit_ctx *ctx, const conduit_endpoint *ep,
	            conduit_flow *inner, int is_server, conduit_flow **out);
	/* Context-wide work (timers, a shared wire): may be NULL. */
	void (*ctx_wait)(void *state, struct conduit_waitset *ws);
	int (*ctx_process)(void *state);
	/* Per-context state.  state_size 0: the state is the arg given to
	 * conduit_ctx_register(), owned by the caller (an object shared by
	 * contexts, such as a TCP/IP stack).  Otherwise the context
	 * allocates state_size zeroed bytes as the backend's state and frees
	 * them after detach. */
	size_t state_size;
	/* Called when registered, with the state and the arg given to
	 * conduit_ctx_register(): CONDUIT_OK, or a failure with its message
	 * on ctx, which leaves the backend unregistered.  May be NULL. */
	int (*attach)(void *state, conduit_ctx *ctx, void *arg);
	/* Called when the context is freed, or when a later registration of
	 * the same backend replaces this state.  Frees what attach (or the
	 * caller, for state_size 0) set up, never a state the context
	 * allocated.  May be NULL. */
	void (*detach)(void *state);
};

/*
 * Register a backend on a context: the one way a backend gets its
 * per-context state (see state_size and attach), used for the built-in
 * backends by conduit_ctx_new() too.  A later registration for the same
 * transport or layer replaces the earlier one for that name: this is how a
 * context's TCP stack is chosen at run time.  Registering the same backend
 * again attaches the new state in the old place and detaches the old one.
 */
int conduit_ctx_register(conduit_ctx *ctx, const struct conduit_backend *be,
                         void *arg);

#ifdef __cplusplus
}
#endif
#endif
