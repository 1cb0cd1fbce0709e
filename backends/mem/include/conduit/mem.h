/*
 * mem.h - two flows joined in memory, for tests and for layering inside
 * one process.  Present when conduit is built with CONDUIT_WITH_MEM.
 *
 * conduit_mem_pair() makes two connected flows with no descriptor, no
 * socket and no thread: what one writes, the other reads.  Each direction
 * holds at most `capacity` bytes; a writer that finds it full gets
 * CONDUIT_WANT_WRITE, a reader that finds it empty CONDUIT_WANT_READ, and
 * conduit_poll() reports each flow ready as soon as the other end has
 * made room or written.  Everything the contract of backend.h asks of a
 * transport holds: short writes, gather writes, half-close (end of stream
 * after the peer's CONDUIT_SHUT_WR, once its bytes are read), graceful and
 * abortive close, and failures that stay.  TLS goes over a pair as over
 * any flow (the TLS layer's wrap, or conduit_starttls() once the URI
 * grammar knows "mem").
 *
 * Both flows belong to the context they were made on and are used from
 * one thread, like every flow.  Nothing but the application moves bytes:
 * a flow waits for what only its peer can do, so a loop that drives both
 * ends polls both (conduit_poll() with two items), and a *_wait call on
 * one end returns as soon as the operation can proceed, or times out if
 * only the peer could make it proceed and nobody drives the peer.
 *
 * The flows are named "mem://N/a" and "mem://N/b" (conduit_flow_uri()),
 * N counting the context's pairs from 1.
 */
#ifndef CONDUIT_MEM_H
#define CONDUIT_MEM_H

#include <conduit/conduit.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes each direction holds when the configuration says 0. */
#define CONDUIT_MEM_DEFAULT_CAPACITY 65536u
/* The largest capacity a pair may have. */
#define CONDUIT_MEM_MAX_CAPACITY (1u << 30)

struct conduit_mem_config {
	/* Bytes buffered per direction (1 .. CONDUIT_MEM_MAX_CAPACITY);
	 * 0: CONDUIT_MEM_DEFAULT_CAPACITY. */
	size_t capacity;
	/* At most this many bytes moved by one read or write, to make
	 * short reads and writes happen; 0: no limit. */
	size_t max_io;
};

/*
 * Make two connected, established flows on ctx.  cfg may be NULL (the
 * defaults).  On CONDUIT_OK *a and *b are the two ends; free each with
 * conduit_flow_free() (after conduit_close() for a graceful end), in any
 * order, before the context.  On failure both are NULL and the message is
 * on ctx: CONDUIT_ERR_INVALID for a NULL argument or a capacity above
 * CONDUIT_MEM_MAX_CAPACITY, CONDUIT_ERR_NOMEM.
 *
 * The first pair made on a context registers the "mem" backend on it
 * (conduit_ctx_backend_name() lists it); it serves no URI.
 */
int conduit_mem_pair(conduit_flow **a, conduit_flow **b, conduit_ctx *ctx,
                     const struct conduit_mem_config *cfg);

/*
 * For tests: make the next read or write of f that reaches the backend
 * fail with status (an error status such as CONDUIT_ERR_RESET), with the
 * message "read URI: injected failure" (or "write ...").  The flow is
 * then failed for good, as after any error: every later operation
 * returns status again, and its peer sees a reset (CONDUIT_ERR_RESET on
 * reads and writes, once the bytes already delivered are read) when f is
 * freed.  Until then conduit_poll() reports f ready for both directions.
 * CONDUIT_ERR_INVALID when f is not a mem flow or status is not an error.
 */
int conduit_mem_inject(conduit_flow *f, int status);

#ifdef __cplusplus
}
#endif
#endif
