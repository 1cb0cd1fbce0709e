/*
 * sockflow.h - what the host-socket backends (unix, tcp) share: a flow
 * over a connected socket descriptor, a non-blocking connect that races a
 * list of addresses as the shared policy says (tcppolicy.h), and a listener
 * over one or more bound descriptors with accept back-off.
 */
#ifndef CONDUIT_SOCKFLOW_H
#define CONDUIT_SOCKFLOW_H

#include "core.h"

#include <stdbool.h>
#include <sys/socket.h>
#include <sys/types.h>

struct cd_sockaddr {
	socklen_t len;
	struct sockaddr_storage ss;
};

/* Per-backend behaviour of socket flows and listeners. */
struct cd_sockhooks {
	const char *name;
	/* Called on every new socket before connect with the backend's
	 * options (a copy of what it passed to cd_sockflow_connect).
	 * Returns 0 or an errno value. */
	int (*prepare)(int fd, const struct cd_sockaddr *to, const void *opts);
	/* Called on every accepted socket.  Returns 0 or an errno value. */
	int (*accepted)(int fd);
	/* Write a printable URI for an accepted peer into buf. */
	void (*peer_uri)(const struct cd_sockaddr *peer, const char *listen_uri,
	                 char *buf, size_t len);
	/* Human text for an address ("127.0.0.1:80"), for messages. */
	void (*describe)(const struct cd_sockaddr *a, char *buf, size_t len);
	/* Map a connect errno to a status (NULL: conduit_status_from_errno). */
	int (*connect_status)(int err);
};

/* A new non-blocking, close-on-exec socket that never raises SIGPIPE.
 * Returns the descriptor or -1 with errno set. */
int cd_socket(int family, int type);

/* Start connecting to addrs, raced as tcppolicy.h says.  opts (optlen bytes,
 * may be NULL) is copied and handed to the prepare hook.  On CONDUIT_OK *out is
 * connected or connecting; on failure the message is on ctx and nothing is left
 * open. */
int cd_sockflow_connect(conduit_flow **out, conduit_ctx *ctx,
                        const conduit_endpoint *ep,
                        const struct cd_sockhooks *hooks,
                        const struct cd_sockaddr *addrs, size_t naddrs,
                        const void *opts, size_t optlen);

/* A listener over bound, listening descriptors (taken over, also on
 * failure).  If unlink_path is set, that file is removed when the listener
 * is freed, provided it is still the same file (device and inode). */
#define CD_MAX_LISTEN_FDS 8
int cd_socklistener_new(conduit_listener **out, conduit_ctx *ctx,
                        const char *uri, const struct cd_sockhooks *hooks,
                        const int *fds, size_t nfds, const char *unlink_path);

/* Text of an errno value in the lower-case style of conduit messages. */
const char *cd_errtext(int err);

#endif
