/*
 * unix.c - the Unix-domain socket backend: path sockets everywhere,
 * abstract sockets on Linux.
 *
 * Listening on a path never destroys data: an existing file is replaced
 * only when it is a socket that nobody listens on.  A requested mode is
 * applied without a window: the socket is bound in a private directory
 * beside the target, given its mode, and renamed into place (which also
 * replaces a stale socket atomically).  The listener removes its socket
 * file when freed, if the file is still the one it made.
 */
#include "sockflow.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define SUN_MAX (sizeof(((struct sockaddr_un *)0)->sun_path))

static bool is_abstract(const conduit_endpoint *ep)
{
	return strcmp(ep->transport, "unix-abstract") == 0;
}

/* Fill a sockaddr for the endpoint; CONDUIT_OK or an error on ctx. */
static int make_addr(conduit_ctx *ctx, const conduit_endpoint *ep,
                     const char *op, struct cd_sockaddr *sa)
{
	struct sockaddr_un *un = (struct sockaddr_un *)&sa->ss;
	size_t n = strlen(ep->path);
	memset(sa, 0, sizeof(*sa));
	un->sun_family = AF_UNIX;
	if (is_abstract(ep)) {
#ifdef __linux__
		if (n + 1 > SUN_MAX)
			return conduit_ctx_fail(
			    ctx, CONDUIT_ERR_PATH_TOO_LONG,
			    "%s %s: abstract name is %zu bytes, "
			    "the limit is %zu",
			    op, cd_endpoint_shown(ep), n, SUN_MAX - 1);
		/* The exact length, no trailing NULs: other programs
		 * (socat, systemd) name the socket the same way. */
		memcpy(un->sun_path + 1, ep->path, n);
		sa->len =
		    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
		return CONDUIT_OK;
#else
		return conduit_ctx_fail(ctx, CONDUIT_ERR_UNSUPPORTED,
		                        "%s %s: abstract sockets exist only on "
		                        "Linux",
		                        op, cd_endpoint_shown(ep));
#endif
	}
	if (n == 0)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_URI,
		                        "%s %s: empty path", op,
		                        cd_endpoint_shown(ep));
	if (n + 1 > SUN_MAX)
		return conduit_ctx_fail(
		    ctx, CONDUIT_ERR_PATH_TOO_LONG,
		    "%s %s: path is %zu bytes, the limit is %zu", op,
		    cd_endpoint_shown(ep), n, SUN_MAX - 1);
	memcpy(un->sun_path, ep->path, n + 1);
	sa->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	return CONDUIT_OK;
}

static void describe(const struct cd_sockaddr *a, char *buf, size_t len)
{
	const struct sockaddr_un *un = (const struct sockaddr_un *)&a->ss;
	size_t off = offsetof(struct sockaddr_un, sun_path);
	if (a->len > off && un->sun_path[0] == '\0')
		snprintf(buf, len, "@%.*s", (int)(a->len - off - 1),
		         un->sun_path + 1);
	else
		snprintf(buf, len, "%s", un->sun_path);
}

static int connect_status(int err)
{
	/* A socket file nobody listens on: "refused", like TCP. */
	return conduit_status_from_errno(err);
}

static const struct cd_sockhooks unix_hooks = {
    .name = "unix",
    .describe = describe,
    .connect_status = connect_status,
};

static int unix_connect(void *state, conduit_ctx *ctx,
                        const conduit_endpoint *ep, conduit_flow **out)
{
	(void)state;
	struct cd_sockaddr sa;
	int rc = make_addr(ctx, ep, "connect", &sa);
	if (rc != CONDUIT_OK)
		return rc;
	return cd_sockflow_connect(out, ctx, ep, &unix_hooks, &sa, 1, NULL, 0);
}

/* Is someone listening on the socket file at sa?  1 yes, 0 no (stale),
 * -1 with errno on failure. */
static int someone_listens(const struct cd_sockaddr *sa)
{
	int fd = cd_socket(AF_UNIX, SOCK_STREAM);
	if (fd < 0)
		return -1;
	int r = connect(fd, (const struct sockaddr *)&sa->ss, sa->len);
	int e = errno;
	close(fd);
	if (r == 0 || e == EINPROGRESS || e == EAGAIN)
		return 1; /* a full queue still means a live listener */
	if (e == ECONNREFUSED)
		return 0;
	errno = e;
	return -1;
}

static int parse_mode(conduit_ctx *ctx, const conduit_endpoint *ep,
                      mode_t *mode, bool *have)
{
	const char *m = conduit_endpoint_option(ep, "mode");
	*have = m != NULL;
	if (m == NULL)
		return CONDUIT_OK;
	char *end = NULL;
	errno = 0;
	unsigned long v = strtoul(m, &end, 8);
	if (errno != 0 || end == m || *end != '\0' || v > 0777)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_OPTION,
		                        "listen %s: mode '%s' is not an octal "
		                        "permission between 0 and 0777",
		                        cd_endpoint_shown(ep), m);
	*mode = (mode_t)v;
	return CONDUIT_OK;
}

static int listen_fail(conduit_ctx *ctx, const conduit_endpoint *ep, int fd,
                       const char *what, int err)
{
	if (fd >= 0)
		close(fd);
	return conduit_ctx_fail(ctx, conduit_status_from_errno(err),
	                        "listen %s: %s: %s", cd_endpoint_shown(ep),
	                        what, cd_errtext(err));
}

/* Bind fd to path through a private directory, so that the file appears
 * with its final mode already set and already listening.  Returns 0, or an
 * errno value; ENAMETOOLONG when the temporary name would not fit (the
 * caller binds in place). */
static int bind_privately(int fd, const char *path, const mode_t *mode)
{
	char dir[SUN_MAX + 16], tmp[SUN_MAX + 32];
	const char *slash = strrchr(path, '/');
	int n = slash == NULL ? snprintf(dir, sizeof(dir), ".cdt-XXXXXX")
	                      : snprintf(dir, sizeof(dir), "%.*s/.cdt-XXXXXX",
	                                 (int)(slash - path), path);
	if (n < 0 || (size_t)n + 3 > SUN_MAX - 1)
		return ENAMETOOLONG;
	if (mkdtemp(dir) == NULL)
		return errno;
	snprintf(tmp, sizeof(tmp), "%s/s", dir);
	struct cd_sockaddr sa;
	struct sockaddr_un *un = (struct sockaddr_un *)&sa.ss;
	memset(&sa, 0, sizeof(sa));
	un->sun_family = AF_UNIX;
	memcpy(un->sun_path, tmp, strlen(tmp) + 1);
	sa.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
	                     strlen(tmp) + 1);
	int e = 0;
	if (bind(fd, (struct sockaddr *)&sa.ss, sa.len) < 0)
		e = errno;
	else if (mode != NULL && chmod(tmp, *mode) < 0)
		e = errno;
	else if (listen(fd, SOMAXCONN) < 0)
		e = errno;
	else if (rename(tmp, path) < 0)
		e = errno;
	if (e != 0)
		unlink(tmp);
	rmdir(dir);
	return e;
}

static int unix_listen(void *state, conduit_ctx *ctx,
                       const conduit_endpoint *ep, conduit_listener **out)
{
	(void)state;
	struct cd_sockaddr sa;
	int rc = make_addr(ctx, ep, "listen", &sa);
	if (rc != CONDUIT_OK)
		return rc;
	mode_t mode = 0;
	bool have_mode = false;
	rc = parse_mode(ctx, ep, &mode, &have_mode);
	if (rc != CONDUIT_OK)
		return rc;

	int fd = cd_socket(AF_UNIX, SOCK_STREAM);
	if (fd < 0)
		return listen_fail(ctx, ep, -1, "socket", errno);

	if (is_abstract(ep)) {
		if (have_mode) {
			close(fd);
			return conduit_ctx_fail(
			    ctx, CONDUIT_ERR_OPTION,
			    "listen %s: mode applies only to "
			    "socket files",
			    cd_endpoint_shown(ep));
		}
		if (bind(fd, (struct sockaddr *)&sa.ss, sa.len) < 0)
			return listen_fail(ctx, ep, fd, "bind", errno);
		if (listen(fd, SOMAXCONN) < 0)
			return listen_fail(ctx, ep, fd, "listen", errno);
		return cd_socklistener_new(out, ctx, ep->uri, &unix_hooks, &fd,
		                           1, NULL);
	}

	const char *path = ep->path;
	struct stat st;
	bool stale = false;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			close(fd);
			return conduit_ctx_fail(
			    ctx, CONDUIT_ERR_NOT_SOCKET,
			    "listen %s: %s exists and is not a "
			    "socket; it was left alone",
			    cd_endpoint_shown(ep), path);
		}
		int live = someone_listens(&sa);
		if (live < 0)
			return listen_fail(
			    ctx, ep, fd, "probing the existing socket", errno);
		if (live) {
			close(fd);
			return conduit_ctx_fail(ctx, CONDUIT_ERR_ADDR_IN_USE,
			                        "listen %s: another process is "
			                        "listening on %s",
			                        cd_endpoint_shown(ep), path);
		}
		stale = true;
	} else if (errno != ENOENT) {
		return listen_fail(ctx, ep, fd, path, errno);
	}

	int e = bind_privately(fd, path, have_mode ? &mode : NULL);
	if (e == ENAMETOOLONG) {
		/* No room for the private name: bind in place.  A client
		 * cannot connect before listen(), so setting the mode
		 * between bind() and listen() leaves no window either. */
		if (stale)
			unlink(path);
		e = 0;
		if (bind(fd, (struct sockaddr *)&sa.ss, sa.len) < 0)
			e = errno;
		else if ((have_mode && chmod(path, mode) < 0) ||
		         listen(fd, SOMAXCONN) < 0) {
			e = errno;
			unlink(path);
		}
	}
	if (e != 0)
		return listen_fail(ctx, ep, fd, "bind", e);
	return cd_socklistener_new(out, ctx, ep->uri, &unix_hooks, &fd, 1,
	                           path);
}

static const char *const unix_transports[] = {"unix", "unix-abstract", NULL};

const struct conduit_backend cd_backend_unix = {
    .name = "unix",
    .transports = unix_transports,
    .connect = unix_connect,
    .listen = unix_listen,
};
