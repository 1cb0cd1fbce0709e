/*
 * status.c - status texts and names, generated from CONDUIT_STATUS_LIST so
 * the enum and its descriptions cannot drift apart; and the one place that
 * maps errno values to statuses.
 */
#include "core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const texts[] = {
#define X(name, text) text,
    CONDUIT_STATUS_LIST(X)
#undef X
};

static const char *const names[] = {
#define X(name, text) #name,
    CONDUIT_STATUS_LIST(X)
#undef X
};

const char *conduit_strerror(int status)
{
	if (status < 0 || status >= CONDUIT_STATUS_COUNT)
		return "unknown status";
	return texts[status];
}

const char *conduit_status_name(int status)
{
	if (status < 0 || status >= CONDUIT_STATUS_COUNT)
		return "?";
	return names[status];
}

int conduit_status_from_errno(int err)
{
	switch (err) {
	case 0:
		return CONDUIT_OK;
	case EAGAIN:
#if EWOULDBLOCK != EAGAIN
	case EWOULDBLOCK:
#endif
		return CONDUIT_WANT_READ;
	case ENOMEM:
	case ENOBUFS:
		return CONDUIT_ERR_NOMEM;
	case EINVAL:
		return CONDUIT_ERR_INVALID;
	case ENOENT:
		return CONDUIT_ERR_NOT_FOUND;
	case ENOTSOCK:
		return CONDUIT_ERR_NOT_SOCKET;
	case EADDRINUSE:
		return CONDUIT_ERR_ADDR_IN_USE;
	case EADDRNOTAVAIL:
		return CONDUIT_ERR_ADDR_UNAVAILABLE;
	case EACCES:
	case EPERM:
		return CONDUIT_ERR_PERMISSION;
	case ECONNREFUSED:
		return CONDUIT_ERR_REFUSED;
	case ENETUNREACH:
	case EHOSTUNREACH:
	case ENETDOWN:
	case EHOSTDOWN:
		return CONDUIT_ERR_UNREACHABLE;
	case ETIMEDOUT:
		return CONDUIT_ERR_TIMED_OUT;
	case ECONNRESET:
	case ECONNABORTED:
		return CONDUIT_ERR_RESET;
	case EPIPE:
		return CONDUIT_ERR_CLOSED;
	case EMFILE:
	case ENFILE:
		return CONDUIT_ERR_TOO_MANY_FILES;
	case ENAMETOOLONG:
		return CONDUIT_ERR_PATH_TOO_LONG;
	case EAFNOSUPPORT:
	case EPROTONOSUPPORT:
	case EOPNOTSUPP:
		return CONDUIT_ERR_UNSUPPORTED;
	default:
		return CONDUIT_ERR_SYSTEM;
	}
}

char *cd_strdup(const char *s)
{
	if (s == NULL)
		return NULL;
	size_t n = strlen(s) + 1;
	char *p = malloc(n);
	if (p != NULL)
		memcpy(p, s, n);
	return p;
}

/* Messages are allocated only when something fails, so an idle object
 * carries one pointer, not a buffer. */
void cd_set_message(char **slot, const char *fmt, va_list ap)
{
	char *msg = NULL;
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	free(*slot);
	*slot = cd_text_shown(msg);
}
