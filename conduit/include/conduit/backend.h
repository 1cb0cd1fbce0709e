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

/*
 * The flow contract.  What every backend's flow ops must do, and what
 * tests/test_contract.c checks on every transport of the build and on the
 * TLS layer.  "Status" is a value of enum conduit_status; an error is any
 * status from CONDUIT_ERR_INVALID on.
 *
 * What the core guarantees the ops (so they need not check):
 *   - read and writev are called only on an established flow that has
 *     neither failed nor been closed, and whose direction is not shut
 *     down; read with len > 0, writev with at least one byte in total
 *     (some of its buffers may be empty);
 *   - shutdown gets only directions not shut yet (how != 0), on an
 *     established flow that has neither failed nor been closed;
 *   - close is called only on an established flow that has not failed,
 *     until it returns something other than a want; then never again,
 *     and no read, write or shutdown follows;
 *   - after an error from handshake, read or writev the core marks the
 *     flow failed and answers every later call with that status itself;
 *   - destroy is called exactly once, last.
 *
 * Errors are reported with conduit_flow_fail(), which sets the flow's
 * message ("read tcp://...: connection reset by peer"), and returned.
 *
 * Wants: CONDUIT_WANT_READ or CONDUIT_WANT_WRITE say what the transport
 * waits for, which may differ from the operation (a TLS read may want a
 * write).  A want is a promise: once wait()'s descriptors or deadline
 * fire, or pending() reports the interest, calling again may make
 * progress.  An op that returns a want has changed nothing the caller
 * can see (no byte read or written).
 *
 * Readiness: pending() and wait() together must cover every way an
 * operation can stop wanting.  A flow whose progress no descriptor
 * announces (lwIP, vchan's look at shared rings, mem) says so through
 * pending(); one with a descriptor may leave pending NULL and let the
 * descriptor tell.  pending() must not report ready when the operation
 * would only want again: conduit_poll() would then spin.
 */
struct conduit_flow_ops {
	const char *name;
	/*
	 * Finish establishment (connect, a layer's handshake): CONDUIT_OK
	 * once done (then never called again), a want while in progress, or
	 * an error.  NULL: the flow is established when made.
	 */
	int (*handshake)(conduit_flow *f);
	/*
	 * Read 1..len bytes: CONDUIT_OK with *nread > 0 (never OK with 0);
	 * CONDUIT_EOF once the peer has shut down its writing side (or
	 * closed gracefully) and every byte it sent before has been read,
	 * and on every read after that; a want when nothing is buffered and
	 * the stream goes on; or an error.  A peer that went away without
	 * ending the stream (reset, freed unclosed, died) is an error
	 * (CONDUIT_ERR_RESET), not an end of stream; bytes delivered before
	 * it may still be read first.
	 *   Layers: the TLS layer reports an inner end of stream without
	 *   close_notify as CONDUIT_ERR_TRUNCATED.
	 */
	int (*read)(conduit_flow *f, void *buf, size_t len, size_t *nread);
	/*
	 * Write the buffers in order, as one stream: CONDUIT_OK with
	 * 1..total bytes in *nwritten, taken from the front (a short write
	 * is normal, never OK with 0); a want when no byte could be taken;
	 * or an error.  A peer that has closed or stopped reading is
	 * CONDUIT_ERR_CLOSED, one that went away abortively
	 * CONDUIT_ERR_RESET; never SIGPIPE.
	 *   Backends differ in when they notice: mem and unix on the first
	 *   write after the peer's close; TCP (host and lwIP) may take bytes
	 *   until the peer's reset comes back; vchan takes them into the
	 *   ring (then wants) until the peer's flow is freed.
	 *   Empty buffers may have a NULL base (the API allows it): never
	 *   hand one to memcpy, which is undefined for NULL even with 0
	 *   bytes.  vchan and TLS do today (UBSan stops on it).
	 *   A layer may queue bytes it took (TLS does, when the inner flow
	 *   is full): they leave with its next read, write, shutdown or
	 *   close, and pending() reports POLLOUT once they can.
	 */
	int (*writev)(conduit_flow *f, const struct conduit_iov *iov,
	              size_t iovcnt, size_t *nwritten);
	/*
	 * Shut down the directions in how (CONDUIT_SHUT_RD, _WR or both):
	 * CONDUIT_OK or an error, never a want: what cannot be sent now (an
	 * end-of-stream mark, TLS close_notify) is sent by later operations
	 * (read, write, close).  After SHUT_WR the peer reads every byte
	 * written before, then CONDUIT_EOF, and may go on writing: the other
	 * direction is untouched.  SHUT_RD drops what is buffered for this
	 * end.
	 *   Backends differ in what SHUT_RD does to the peer's later
	 *   writes: mem and unix make them CONDUIT_ERR_CLOSED; host TCP and
	 *   lwIP take and drop them; vchan leaves them in the ring, so the
	 *   peer's writes want once it is full.
	 *   The core does not mark a flow failed after a shutdown error.
	 */
	int (*shutdown)(conduit_flow *f, unsigned how);
	/*
	 * Graceful close: the peer reads every byte written before, then
	 * CONDUIT_EOF; its writes then fail (CONDUIT_ERR_CLOSED, or for TCP
	 * a reset).  CONDUIT_OK, a want (a last record or mark to send:
	 * call again), or an error (the flow is closed all the same).  NULL:
	 * nothing to do before destroy.
	 *   Backends differ: unix and tcp have no close op, so the peer
	 *   sees the end of stream only when the flow is freed; vchan's
	 *   close sends the end of stream, but the peer's writes fail only
	 *   once the flow is freed; TCP (host and lwIP) closing with unread
	 *   bytes sends a reset, and the peer reads CONDUIT_ERR_RESET
	 *   instead of the end of stream.
	 */
	int (*close)(conduit_flow *f);
	/*
	 * Free everything, including the struct itself and, for a layer,
	 * the inner flow (with conduit_flow_free()).  A flow that was not
	 * closed gracefully (no close op run to its end, or failed) is
	 * ended abortively where the transport can tell the difference:
	 * the peer's reads and writes fail with CONDUIT_ERR_RESET (lwIP,
	 * vchan, mem).  unix and tcp close the descriptor either way (the
	 * kernel sends an end of stream, or a reset over unread bytes).
	 */
	void (*destroy)(conduit_flow *f);
	/*
	 * Add to ws what an operation with this interest (CONDUIT_POLLIN
	 * for read, CONDUIT_POLLOUT for write and handshake) waits on:
	 * descriptors (conduit_waitset_fd) and deadlines
	 * (conduit_waitset_deadline; 0 for "ready now").  Called on flows
	 * that have neither failed nor closed, in any state, also while
	 * connecting.  May ask the peer for a notification (vchan), must
	 * not move bytes.  A flow with nothing to wait on adds nothing.
	 * What fires must be news for this interest: a deadline of 0 for a
	 * state that does not let the operation proceed makes
	 * conduit_poll() spin.
	 *   Known deviations: vchan's descriptor may announce, once, events
	 *   of bytes already read (they are consumed on the way to the next
	 *   want); and its wait() reports a writer ready now once the
	 *   peer's end of stream has been read, even with the ring full.
	 */
	void (*wait)(conduit_flow *f, unsigned interest,
	             struct conduit_waitset *ws);
	/*
	 * The subset of interest that needs no waiting: POLLIN when a read
	 * would return bytes, CONDUIT_EOF or an error; POLLOUT when a write
	 * would take bytes or fail; while establishing, the interest when
	 * handshake can make progress.  Cheap and without side effects: it
	 * runs on every turn of conduit_poll().  NULL: nothing is ever
	 * ready but what the descriptors of wait() announce.
	 */
	unsigned (*pending)(conduit_flow *f, unsigned interest);
	/* Optional: credentials of the peer (CONDUIT_OK or an error, the
	 * message set); NULL: CONDUIT_ERR_UNSUPPORTED. */
	int (*peer_cred)(conduit_flow *f, struct conduit_peer_cred *cred);
	/* Optional: the descriptor (never to be read, written or closed by
	 * others); NULL or -1: none. */
	int (*fd)(const conduit_flow *f);
	/* Bytes received but not yet read by the application (for
	 * StartTLS, which must not start over unread plaintext): more
	 * than 0 while any wait, 0 once all are read.  Not an exact count
	 * (vchan counts its record headers, TLS ciphertext not yet
	 * decrypted).  CONDUIT_OK or an error.  NULL: the flow cannot
	 * tell, and StartTLS refuses it. */
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

/*
 * Layers: passing through to the inner flow, as lwIP's altcp layers do.
 * A layer (TLS, or one of its own) keeps the flow it wraps and calls
 * these from its ops instead of reaching into the inner flow's ops.
 */

/* The poll bit a want waits on: CONDUIT_POLLIN for CONDUIT_WANT_READ,
 * CONDUIT_POLLOUT for CONDUIT_WANT_WRITE, 0 for any other status. */
unsigned conduit_want_bits(int status);

/* What inner can do for interest without waiting: all of interest once
 * it has failed or been closed (the next call reports that), else what
 * its pending op says (0 without one: its descriptors tell). */
unsigned conduit_flow_inner_pending(conduit_flow *inner, unsigned interest);

/* Add what inner waits on for interest; a failed or closed inner flow
 * waits on nothing and makes ws ready now. */
void conduit_flow_inner_wait(conduit_flow *inner, unsigned interest,
                             struct conduit_waitset *ws);

/*
 * conduit_read(), conduit_writev(), conduit_shutdown() and
 * conduit_close() on inner on behalf of the layer f (inner's counters
 * and state kept by the core as for any flow): CONDUIT_OK, the wants and
 * CONDUIT_EOF are returned as they are; an error is recorded on f with
 * inner's message and returned.
 */
int conduit_flow_inner_read(conduit_flow *f, conduit_flow *inner, void *buf,
                            size_t len, size_t *nread);
int conduit_flow_inner_writev(conduit_flow *f, conduit_flow *inner,
                              const struct conduit_iov *iov, size_t iovcnt,
                              size_t *nwritten);
int conduit_flow_inner_shutdown(conduit_flow *f, conduit_flow *inner,
                                unsigned how);
int conduit_flow_inner_close(conduit_flow *f, conduit_flow *inner);
/* inner's unread op; CONDUIT_ERR_UNSUPPORTED (message on f) without
 * one.  *n is 0 unless CONDUIT_OK. */
int conduit_flow_inner_unread(conduit_flow *f, conduit_flow *inner, size_t *n);

/*
 * The listener contract.
 */
struct conduit_listener_ops {
	const char *name;
	/*
	 * Take one waiting connection: CONDUIT_OK with *out a new flow the
	 * caller owns (established, or for a layered listener still to
	 * handshake); CONDUIT_WANT_READ when none is waiting; or an error
	 * (conduit_listener_fail()), which does not end the listener: a
	 * later accept may succeed.  After CONDUIT_ERR_TOO_MANY_FILES a
	 * listener backs off for a moment (WANT_READ, with a deadline in
	 * wait) rather than letting conduit_poll() spin.
	 */
	int (*accept)(conduit_listener *l, conduit_flow **out);
	/* Stop listening and free everything, the struct included (and the
	 * socket file it made).  Flows it accepted live on, owned by the
	 * application. */
	void (*destroy)(conduit_listener *l);
	/* Add what accept waits on (descriptors, a back-off deadline). */
	void (*wait)(conduit_listener *l, struct conduit_waitset *ws);
	/* Non-zero when accept would not just return CONDUIT_WANT_READ
	 * (connections queued in the backend); cheap, no side effects.
	 * NULL: the descriptors of wait() tell. */
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
