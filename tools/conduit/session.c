/*
 * session.c - the one event loop every subcommand of `conduit` runs in.
 *
 * A "session" is one accepted or connected flow plus its partner
 * (standard input and output, a second flow for the relay, or nothing
 * for an echo), joined by one or two "directions", each a bounded buffer
 * from a source to a sink.  A direction stops reading while its buffer is
 * full, so a slow sink slows its source instead of growing memory
 * (backpressure), and when its source ends it passes the end on as a
 * half-close once the buffer has drained.  A session is over when every
 * direction has ended.
 *
 * The loop uses the event-loop integration API (conduit_wait_fds(),
 * poll(2), conduit_process()) rather than conduit_poll(), because it must
 * also wait on descriptors that are not flows: standard input and output,
 * and a self-pipe that turns SIGINT/SIGTERM/SIGHUP into a clean exit (the
 * listener's socket file removed, stdin/stdout flags restored).  Each
 * session asks conduit_wait_fds() separately, so after poll(2) only the
 * sessions whose descriptors fired, or whose deadline came, are run: a
 * relay with many idle connections costs nothing per wake-up for the idle
 * ones.
 */
#include "cli.h"
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Reads per direction per wake-up, so one busy connection cannot starve
 * the others (poll(2) is level-triggered: the rest is seen next turn). */
#define DIR_ROUNDS 8
/* Relay and echo sessions at most, whatever the descriptor limit says. */
#define MAX_SESSIONS 4096

/* ------------------------------------------------------------------ */
/* Standard input and output                                           */

/*
 * Standard input and output are made non-blocking while the command runs,
 * so that a full pipe or a slow terminal stalls only its own direction.
 * O_NONBLOCK belongs to the open file description, which the shell may
 * share, so the original flags are put back on every way out: normal exit
 * and the signals the loop turns into an exit.
 */
static int saved_flags[2] = {-1, -1};

static void stdio_restore(void)
{
	for (int fd = 1; fd >= 0; fd--)
		if (saved_flags[fd] >= 0) {
			fcntl(fd, F_SETFL, saved_flags[fd]);
			saved_flags[fd] = -1;
		}
}

/* Returns false when fd is not open at all. */
static bool stdio_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return false;
	if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0)
		saved_flags[fd] = fl;
	return true;
}

/* The self-pipe: a signal handler writes the signal number, the loop
 * polls the read end. */
static int sig_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
	int e = errno;
	unsigned char b = (unsigned char)sig;
	if (write(sig_pipe[1], &b, 1) < 0) {
		/* Full pipe: a signal is already pending; nothing to do. */
	}
	errno = e;
}

int signal_fd(void)
{
	return sig_pipe[0];
}

static int signals_setup(void)
{
	if (pipe(sig_pipe) < 0)
		return -1;
	for (int i = 0; i < 2; i++) {
		fcntl(sig_pipe[i], F_SETFD, FD_CLOEXEC);
		fcntl(sig_pipe[i], F_SETFL, O_NONBLOCK);
	}
	/* A closed stdout must be an EPIPE we report, not a silent death. */
	tool_catch_signals(on_signal, 1);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Sessions                                                            */

static bool dir_reads_stdin(const struct dir *d)
{
	return d->src->flow == NULL;
}

int session_fail(struct session *s, int rc, bool in_setup, const char *msg)
{
	if (s->rc == CONDUIT_OK) {
		s->rc = rc;
		s->in_setup = in_setup;
		snprintf(s->msg, sizeof(s->msg), "%s", msg);
	}
	return rc;
}

static int stdio_fail(struct session *s, const char *what, int err)
{
	char m[256];
	snprintf(m, sizeof(m), "%s: %s", what, strerror(err));
	return session_fail(
	    s, err == EPIPE ? CONDUIT_ERR_CLOSED : CONDUIT_ERR_SYSTEM, false,
	    m);
}

/* Read from an end: the conduit statuses, for stdin too. */
static int end_read(struct session *s, struct end *e, void *buf, size_t len,
                    size_t *n)
{
	*n = 0;
	if (e->flow != NULL) {
		int rc = conduit_read(e->flow, buf, len, n);
		if (rc >= CONDUIT_ERR_INVALID)
			session_fail(s, rc, false, conduit_flow_error(e->flow));
		return rc;
	}
	for (;;) {
		ssize_t r = read(STDIN_FILENO, buf, len);
		if (r > 0) {
			*n = (size_t)r;
			return CONDUIT_OK;
		}
		if (r == 0)
			return CONDUIT_EOF;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return CONDUIT_WANT_READ;
		return stdio_fail(s, "read standard input", errno);
	}
}

static int end_write(struct session *s, struct end *e, const void *buf,
                     size_t len, size_t *n)
{
	*n = 0;
	if (e->flow != NULL) {
		int rc = conduit_write(e->flow, buf, len, n);
		if (rc >= CONDUIT_ERR_INVALID)
			session_fail(s, rc, false, conduit_flow_error(e->flow));
		return rc;
	}
	for (;;) {
		ssize_t r = write(STDOUT_FILENO, buf, len);
		if (r >= 0) {
			*n = (size_t)r;
			return CONDUIT_OK;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return CONDUIT_WANT_WRITE;
		return stdio_fail(s, "write standard output", errno);
	}
}

/* Pass the end of stream on.  Standard output stays open: in
 * `listen --keep` the next connection writes to it too, and it closes
 * when the command exits. */
static int end_shut(struct session *s, struct end *e)
{
	if (e->flow == NULL)
		return CONDUIT_OK;
	int rc = conduit_shutdown(e->flow, CONDUIT_SHUT_WR);
	/* A transport that cannot say "no more" without ending the peer's
	 * sending too (a plain vchan peer) refuses the half-close and stays
	 * usable: this direction is over, and the session goes on until the
	 * peer closes. */
	if (rc == CONDUIT_ERR_UNSUPPORTED)
		return CONDUIT_OK;
	if (rc != CONDUIT_OK)
		session_fail(s, rc, false, conduit_flow_error(e->flow));
	return rc;
}

static bool is_want(int rc)
{
	return rc == CONDUIT_WANT_READ || rc == CONDUIT_WANT_WRITE;
}

/* Move what can move now.  Returns CONDUIT_OK or the failure (recorded on
 * s); *moved says whether anything happened, for the idle clock. */
static int dir_pump(struct prog *p, struct session *s, struct dir *d,
                    bool *moved)
{
	for (int round = 0; round < DIR_ROUNDS && !d->done; round++) {
		bool progress = false;
		size_t n;
		int rc;
		if (d->len > d->off && d->dst->up) {
			rc = end_write(s, d->dst, d->buf + d->off,
			               d->len - d->off, &n);
			if (rc == CONDUIT_OK && n > 0) {
				d->off += n;
				progress = true;
			} else if (!is_want(rc) && rc != CONDUIT_OK) {
				return rc;
			}
		}
		if (d->off == d->len) {
			d->off = d->len = 0;
		} else if (d->off >= DIR_CAP / 2) {
			/* Make room at the tail so reading can go on while the
			 * sink drains; at most half the buffer is copied. */
			memmove(d->buf, d->buf + d->off, d->len - d->off);
			d->len -= d->off;
			d->off = 0;
		}
		if (!d->eof && d->len < DIR_CAP && d->src->up) {
			rc = end_read(s, d->src, d->buf + d->len,
			              DIR_CAP - d->len, &n);
			if (rc == CONDUIT_OK) {
				d->len += n;
				progress = true;
			} else if (rc == CONDUIT_EOF) {
				d->eof = true;
				if (dir_reads_stdin(d))
					p->stdin_eof = true;
				progress = true;
			} else if (!is_want(rc)) {
				return rc;
			}
		}
		if (d->eof && d->len == d->off && d->dst->up) {
			rc = end_shut(s, d->dst);
			if (rc != CONDUIT_OK)
				return rc;
			d->done = true;
			progress = true;
		}
		if (progress)
			*moved = true;
		else
			break;
	}
	return CONDUIT_OK;
}

static bool session_over(const struct session *s)
{
	for (size_t i = 0; i < s->ndir; i++)
		if (!s->dir[i].done)
			return false;
	return true;
}

static bool session_up(const struct session *s)
{
	for (size_t i = 0; i < s->nend; i++)
		if (!s->end[i].up)
			return false;
	return true;
}

/* Run a session as far as it goes without waiting. */
static int session_run(struct prog *p, struct session *s, uint64_t now)
{
	for (size_t i = 0; i < s->nend; i++) {
		struct end *e = &s->end[i];
		if (e->flow == NULL || e->up)
			continue;
		int rc = conduit_handshake(e->flow);
		if (rc == CONDUIT_OK)
			e->up = true;
		else if (!is_want(rc))
			return session_fail(s, rc, true,
			                    conduit_flow_error(e->flow));
	}
	bool moved = false;
	for (size_t i = 0; i < s->ndir; i++) {
		int rc = dir_pump(p, s, &s->dir[i], &moved);
		if (rc != CONDUIT_OK)
			return rc;
	}
	if (p->o->timeout_ms > 0 && session_up(s)) {
		if (moved || s->idle_at == UINT64_MAX)
			s->idle_at = now + (uint64_t)p->o->timeout_ms;
		else if (now >= s->idle_at) {
			char m[256];
			snprintf(m, sizeof(m), "%s: idle for %d ms",
			         s->end[0].flow != NULL
			             ? conduit_flow_uri(s->end[0].flow)
			             : "standard input",
			         p->o->timeout_ms);
			return session_fail(s, CONDUIT_ERR_TIMED_OUT, false, m);
		}
	}
	return CONDUIT_OK;
}

struct session *session_new(struct prog *p)
{
	if (p->ns == p->scap) {
		size_t cap = p->scap ? p->scap * 2 : 8;
		struct session **n = realloc(p->s, cap * sizeof(*n));
		if (n == NULL)
			return NULL;
		p->s = n;
		p->scap = cap;
	}
	struct session *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->idle_at = UINT64_MAX;
	s->wake_at = UINT64_MAX;
	p->s[p->ns++] = s;
	return s;
}

bool session_join(struct session *s, bool echo)
{
	s->ndir = echo ? 1 : 2;
	for (size_t i = 0; i < s->ndir; i++) {
		struct dir *d = &s->dir[i];
		d->buf = malloc(DIR_CAP);
		if (d->buf == NULL)
			return false;
		d->src = &s->end[echo ? 0 : i];
		d->dst = &s->end[echo ? 0 : 1 - i];
	}
	return true;
}

static void session_free(struct session *s)
{
	for (size_t i = 0; i < s->nend; i++) {
		if (s->end[i].flow == NULL)
			continue;
		/* Socket flows close at once; a layer that still had a record
		 * to send would be cut short, which is what a failed session
		 * wants anyway. */
		conduit_close(s->end[i].flow);
		conduit_flow_free(s->end[i].flow);
	}
	for (size_t i = 0; i < s->ndir; i++)
		free(s->dir[i].buf);
	free(s);
}

/* ------------------------------------------------------------------ */
/* The loop                                                            */

static bool fds_room(struct prog *p, size_t more)
{
	if (p->fdcap - p->nfds >= more)
		return true;
	size_t cap = p->fdcap ? p->fdcap : 32;
	while (cap - p->nfds < more)
		cap *= 2;
	struct pollfd *n = realloc(p->fds, cap * sizeof(*n));
	if (n == NULL)
		return false;
	p->fds = n;
	p->fdcap = cap;
	return true;
}

static void fds_add(struct prog *p, int fd, short events)
{
	/* Room was made by the caller. */
	p->fds[p->nfds].fd = fd;
	p->fds[p->nfds].events = events;
	p->fds[p->nfds].revents = 0;
	p->nfds++;
}

/* Append what items wait on; *tmo: the library's timeout for them. */
static int add_wait(struct prog *p, struct conduit_pollitem *items, size_t n,
                    int *tmo)
{
	size_t want = 8;
	for (;;) {
		if (!fds_room(p, want))
			return CONDUIT_ERR_NOMEM;
		size_t got = 0;
		int rc = conduit_wait_fds(p->ctx, items, n, p->fds + p->nfds,
		                          p->fdcap - p->nfds, &got, tmo);
		if (rc == CONDUIT_ERR_INVALID && got > p->fdcap - p->nfds) {
			want = got; /* too small: it told us the size */
			continue;
		}
		if (rc != CONDUIT_OK)
			return rc;
		p->nfds += got;
		return CONDUIT_OK;
	}
}

static unsigned interest(const struct session *s, const struct end *e,
                         unsigned *stdin_ev, unsigned *stdout_ev)
{
	unsigned ev = 0;
	if (e->flow != NULL && !e->up)
		return CONDUIT_POLLOUT;
	for (size_t i = 0; i < s->ndir; i++) {
		const struct dir *d = &s->dir[i];
		/* Reading goes on while the partner connects, until the
		 * buffer is full. */
		if (d->src == e && !d->eof && d->len < DIR_CAP)
			ev |= CONDUIT_POLLIN;
		if (d->dst == e && d->len > d->off)
			ev |= CONDUIT_POLLOUT;
	}
	if (e->flow == NULL) {
		*stdin_ev = ev & CONDUIT_POLLIN;
		*stdout_ev = ev & CONDUIT_POLLOUT;
	}
	return ev;
}

/* Gather one session's descriptors and deadlines. */
static int session_wait(struct prog *p, struct session *s, uint64_t now,
                        int *timeout)
{
	struct conduit_pollitem items[2];
	size_t n = 0;
	unsigned in_ev = 0, out_ev = 0;
	for (size_t i = 0; i < s->nend; i++) {
		unsigned ev = interest(s, &s->end[i], &in_ev, &out_ev);
		if (s->end[i].flow != NULL) {
			items[n].flow = s->end[i].flow;
			items[n].listener = NULL;
			items[n].events = ev;
			n++;
		}
	}
	s->span_lo = p->nfds;
	int tmo = -1;
	int rc = add_wait(p, items, n, &tmo);
	if (rc != CONDUIT_OK)
		return rc;
	if (!fds_room(p, 2))
		return CONDUIT_ERR_NOMEM;
	if (in_ev)
		fds_add(p, STDIN_FILENO, POLLIN);
	if (out_ev)
		fds_add(p, STDOUT_FILENO, POLLOUT);
	s->span_hi = p->nfds;
	s->wake_at = tmo < 0 ? UINT64_MAX : now + (uint64_t)tmo;
	uint64_t at = s->wake_at < s->idle_at ? s->wake_at : s->idle_at;
	if (at != UINT64_MAX) {
		int ms = at <= now            ? 0
		         : at - now > INT_MAX ? INT_MAX
		                              : (int)(at - now);
		if (*timeout < 0 || ms < *timeout)
			*timeout = ms;
	}
	return CONDUIT_OK;
}

static bool accepting(const struct prog *p)
{
	if (p->l == NULL)
		return false;
	if (p->mode == MODE_STDIO)
		return p->ns ==
		       0; /* one connection at a time on stdin/stdout */
	return p->ns < p->max_sessions;
}

/* A session for a flow just accepted. */
static void start_session(struct prog *p, conduit_flow *f, uint64_t now)
{
	struct session *s = session_new(p);
	if (s == NULL || !session_join(s, p->mode == MODE_ECHO)) {
		say("%s: out of memory", conduit_flow_uri(f));
		if (s != NULL) {
			s->end[0].flow = f;
			s->nend = 1;
			session_fail(s, CONDUIT_ERR_NOMEM, false,
			             "out of memory");
		} else {
			conduit_flow_free(f);
		}
		return;
	}
	s->end[0].flow = f;
	/* Accepted flows go through conduit_handshake() too: a TLS server's
	 * handshake then fails as a connection failure (exit 4), before any
	 * byte or end of stream is passed on. */
	s->end[0].up = false;
	s->nend = p->mode == MODE_ECHO ? 1 : 2;
	if (p->mode == MODE_STDIO) {
		s->end[1].up = true;
		s->dir[1].eof = p->stdin_eof; /* dir 1 reads end 1: stdin */
	} else if (p->mode == MODE_RELAY) {
		conduit_flow *t = NULL;
		int rc = conduit_connect_endpoint(&t, p->ctx, p->target);
		if (rc != CONDUIT_OK) {
			s->nend = 1;
			session_fail(s, rc, true, conduit_ctx_error(p->ctx));
			return;
		}
		s->end[1].flow = t;
	}
	session_run(p, s, now);
}

static void accept_some(struct prog *p, uint64_t now)
{
	while (accepting(p)) {
		conduit_flow *f = NULL;
		int rc = conduit_accept(&f, p->l);
		if (is_want(rc))
			return;
		if (rc != CONDUIT_OK) {
			/* Out of descriptors and the like: the listener pauses
			 * by itself; the command goes on. */
			say("%s", conduit_listener_error(p->l));
			return;
		}
		p->accepted = true;
		if (p->o->keep == false && p->mode != MODE_RELAY) {
			/* One connection: stop listening, so later ones are
			 * refused rather than left waiting in the queue. */
			conduit_listener_free(p->l);
			p->l = NULL;
		}
		start_session(p, f, now);
	}
}

/* A session has ended: report it, and in single-session modes return the
 * exit status (-1 to go on). */
static int session_end(struct prog *p, struct session *s)
{
	int status = 0;
	const char *who =
	    s->end[0].flow != NULL ? conduit_flow_uri(s->end[0].flow) : "";
	if (s->rc != CONDUIT_OK) {
		status = s->in_setup ? setup_exit(s->rc) : EXIT_IO;
		if (p->single || p->mode == MODE_CAT)
			say("%s", s->msg);
		else
			say("%s %s: %s",
			    p->mode == MODE_RELAY ? "relay" : "serving", who,
			    s->msg);
	} else if (p->o->verbose) {
		struct conduit_flow_stats st;
		conduit_flow_stats(s->end[0].flow, &st);
		say("finished %s (%llu bytes in, %llu out)", who,
		    (unsigned long long)st.bytes_read,
		    (unsigned long long)st.bytes_written);
	}
	return p->single || p->mode == MODE_CAT ? status : -1;
}

/* Returns the exit status, or 128 + a signal number (re-raised by main). */
static int loop(struct prog *p)
{
	for (;;) {
		uint64_t now = tool_now_ms();
		int timeout = -1;
		p->nfds = 0;
		if (!fds_room(p, 1))
			goto nomem;
		fds_add(p, sig_pipe[0], POLLIN);
		/* --lwip-dgram: the other end of the wire not yet taken. */
		size_t w_at = SIZE_MAX;
		if (wire_fd() >= 0) {
			if (!fds_room(p, 1))
				goto nomem;
			w_at = p->nfds;
			fds_add(p, wire_fd(), POLLIN);
		}

		size_t l_lo = p->nfds, l_hi = p->nfds;
		bool l_now = false;
		if (accepting(p)) {
			struct conduit_pollitem it = {.listener = p->l,
			                              .events = CONDUIT_POLLIN};
			int tmo = -1;
			if (add_wait(p, &it, 1, &tmo) != CONDUIT_OK)
				goto nomem;
			l_hi = p->nfds;
			l_now = tmo == 0;
			if (tmo >= 0 && (timeout < 0 || tmo < timeout))
				timeout = tmo;
		}
		for (size_t i = 0; i < p->ns; i++)
			if (session_wait(p, p->s[i], now, &timeout) !=
			    CONDUIT_OK)
				goto nomem;

		int r = poll(p->fds, (nfds_t)p->nfds, timeout);
		if (r < 0 && errno != EINTR) {
			say("poll: %s", strerror(errno));
			return EXIT_IO;
		}
		conduit_process(p->ctx);
		now = tool_now_ms();

		unsigned char sig = 0;
		if (read(sig_pipe[0], &sig, 1) == 1)
			return 128 + sig;
		if (w_at != SIZE_MAX && p->fds[w_at].revents != 0)
			wire_hand_over(p->o->verbose);

		bool l_ready = l_now;
		for (size_t k = l_lo; k < l_hi; k++)
			if (p->fds[k].revents != 0)
				l_ready = true;
		/* Sessions first: accepting adds sessions whose spans are
		 * not in this round's array. */
		for (size_t i = 0; i < p->ns; i++) {
			struct session *s = p->s[i];
			bool ready = now >= s->wake_at || now >= s->idle_at;
			for (size_t k = s->span_lo; k < s->span_hi && !ready;
			     k++)
				if (p->fds[k].revents != 0)
					ready = true;
			if (ready && s->rc == CONDUIT_OK)
				session_run(p, s, now);
		}
		if (l_ready)
			accept_some(p, now);
		/* Retire finished sessions (in place, keeping order). */
		size_t keep = 0;
		int status = -1;
		for (size_t i = 0; i < p->ns; i++) {
			struct session *s = p->s[i];
			if (s->rc == CONDUIT_OK && !session_over(s)) {
				p->s[keep++] = s;
				continue;
			}
			int st = session_end(p, s);
			if (st >= 0)
				status = st;
			session_free(s);
		}
		p->ns = keep;
		if (status >= 0)
			return status;
	}
nomem:
	say("out of memory");
	return EXIT_IO;
}

static size_t session_limit(void)
{
	/* Each relay session holds two descriptors; leave some spare for
	 * the listener, stdio and the self-pipe. */
	struct rlimit rl;
	size_t n = MAX_SESSIONS;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur / 2 < n + 16)
		n = rl.rlim_cur > 48 ? (size_t)(rl.rlim_cur - 32) / 2 : 1;
	return n;
}

/* ------------------------------------------------------------------ */
/* Running a subcommand                                                */

int run(conduit_ctx *ctx, const struct opts *o)
{
	struct prog p = {
	    .ctx = ctx,
	    .o = o,
	    .max_sessions = session_limit(),
	};
	int status;
	if (signals_setup() < 0) {
		say("pipe: %s", strerror(errno));
		return EXIT_IO;
	}
	status = o->cmd == CMD_CAT     ? cat_start(&p)
	         : o->cmd == CMD_RELAY ? relay_start(&p)
	                               : listen_start(&p);
	if (status != 0)
		goto out;
	if (p.mode == MODE_CAT || p.mode == MODE_STDIO) {
		/* stdin not open at all reads as empty. */
		p.stdin_eof = !stdio_nonblock(STDIN_FILENO);
		if (p.ns > 0)
			p.s[0]->dir[1].eof = p.stdin_eof;
		stdio_nonblock(STDOUT_FILENO);
	}
	status = loop(&p);
out:
	for (size_t i = 0; i < p.ns; i++)
		session_free(p.s[i]);
	free(p.s);
	free(p.fds);
	conduit_listener_free(p.l);
	conduit_endpoint_free(p.target);
	stdio_restore();
	return status;
}
