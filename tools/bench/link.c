/*
 * link.c - the byte-stream sections' one link layer (see link.h).
 */
#include "link.h"

#include "bench.h"

#include <conduit/conduit.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

/* Every wait for a server is bounded; generous so that a loaded machine
 * or valgrind does not turn slowness into a failure. */
#define CHILD_TIMEOUT_MS 30000
/* A server that outlives this is stuck: SIGALRM ends it. */
#define CHILD_WATCHDOG_S 600

static int sink(struct bench_link *k, uint64_t amount, struct bench_report *rep)
{
	unsigned char *buf = malloc(LINK_RBUF);
	if (buf == NULL)
		return bench_fail("out of memory");
	uint64_t off = 0, bad = UINT64_MAX;
	int r = 0;
	size_t n = 0;
	/* Every read brings at least one byte: amount + 1 passes at most. */
	for (uint64_t pass = 0; off < amount && r == 0; pass++) {
		int g = k->ops->read(k, buf, LINK_RBUF, &n);
		if (g < 0)
			r = -1;
		else if (pass > amount)
			r = bench_fail("more reads than bytes");
		else if (g == 0)
			r = bench_fail("end of stream after %" PRIu64
			               " of %" PRIu64 " bytes",
			               off, amount);
		else if (n > amount - off)
			r = bench_fail("more bytes than were sent");
		else {
			/* The same check on every variant; after the first
			 * wrong byte only counting goes on. */
			if (bad == UINT64_MAX)
				bad = tool_pat_check(buf, n, off);
			off += n;
		}
	}
	if (r == 0) {
		unsigned char ack = 'k';
		r = k->ops->write_all(k, &ack, 1);
	}
	/* A stream then ends; messages have no end to wait for. */
	if (r == 0 && !k->messages) {
		int g = k->ops->read(k, buf, LINK_RBUF, &n);
		if (g > 0)
			r = bench_fail("bytes after the end of the stream");
		else if (g < 0)
			r = -1;
	}
	rep->count = off;
	rep->bad_at = bad;
	free(buf);
	return r;
}

static int echo(struct bench_link *k, uint64_t amount, struct bench_report *rep)
{
	unsigned char buf[LINK_PING];
	int r = -1;
	for (uint64_t pass = 0; pass <= amount; pass++) {
		/* A stream ends with the client's close; messages stop when
		 * all have come back. */
		if (k->messages && rep->count == amount) {
			r = 0;
			break;
		}
		size_t n = 0;
		int g = k->ops->read(k, buf, sizeof(buf), &n);
		if (g < 0)
			break;
		if (g == 0) {
			r = 0;
			break;
		}
		if (k->ops->write_all(k, buf, n) < 0)
			break;
		rep->count += n;
	}
	if (r < 0 && bench_errmsg[0] == '\0')
		bench_fail("echo: more passes than bytes");
	return r;
}

int link_serve(struct bench_link *k, enum link_role role, uint64_t amount,
               struct bench_report *rep)
{
	int r = role == ROLE_SINK ? sink(k, amount, rep) : echo(k, amount, rep);
	k->ops->close(k);
	return r;
}

int link_send(struct bench_link *k, size_t ws, uint64_t total, uint64_t *ns)
{
	unsigned char *buf = malloc(ws);
	if (buf == NULL)
		return bench_fail("out of memory");
	uint64_t t0 = tool_now_ns();
	for (uint64_t off = 0; off < total; off += ws) {
		tool_pat_fill(buf, ws, off);
		if (k->ops->write_all(k, buf, ws) < 0) {
			free(buf);
			return -1;
		}
	}
	unsigned char ack;
	size_t n = 0;
	int g = k->ops->read(k, &ack, 1, &n);
	uint64_t t1 = tool_now_ns();
	free(buf);
	if (g <= 0) {
		if (g == 0)
			bench_fail("end of stream instead of the receiver's "
			           "ack");
		return -1;
	}
	*ns = t1 - t0;
	return 0;
}

int link_pings(struct bench_link *k, unsigned warm, unsigned n,
               uint64_t *samples)
{
	unsigned char out[LINK_PING], in[LINK_PING];
	for (unsigned i = 0; i < warm + n; i++) {
		tool_pat_fill(out, sizeof(out), (uint64_t)i * LINK_PING);
		uint64_t t0 = tool_now_ns();
		if (k->ops->write_all(k, out, sizeof(out)) < 0)
			return -1;
		size_t got = 0;
		/* At most one pass per byte. */
		for (int pass = 0; got < sizeof(in) && pass < LINK_PING;
		     pass++) {
			size_t m = 0;
			int g = k->ops->read(k, in + got, sizeof(in) - got, &m);
			if (g <= 0) {
				if (g == 0)
					bench_fail("the echo server closed "
					           "early");
				return -1;
			}
			got += m;
		}
		uint64_t t1 = tool_now_ns();
		if (got != sizeof(in) || memcmp(in, out, sizeof(in)) != 0)
			return bench_fail("byte mismatch: round trip %u came "
			                  "back different",
			                  i);
		if (i >= warm)
			samples[i - warm] = t1 - t0;
	}
	return 0;
}

int link_client(struct bench_child *c, struct bench_link *k,
                struct link_run *run)
{
	int r = -1;
	if (k != NULL) {
		r = run->role == ROLE_SINK
		        ? link_send(k, run->ws, run->total, &run->ns)
		        : link_pings(k, run->warm, run->n, run->samples);
		k->ops->close(k);
	}
	if (r < 0) {
		bench_child_abort(c);
		return -1;
	}
	struct bench_report rep;
	if (bench_child_finish(c, &rep) < 0)
		return -1;
	if (run->role == ROLE_SINK)
		return link_check_sink(&rep, run->total);
	return link_check_count(&rep, run->total, "the echo server echoed",
	                        "bytes");
}

int link_flow_write(struct conduit_flow *f, const void *buf, size_t len,
                    int timeout_ms)
{
	int rc = conduit_write_all(f, buf, len, NULL, timeout_ms);
	if (rc != CONDUIT_OK)
		return bench_fail("conduit_write_all: %s",
		                  bench_cerr(conduit_flow_error(f), rc));
	return 0;
}

int link_flow_read(struct conduit_flow *f, void *buf, size_t cap, size_t *got,
                   int timeout_ms)
{
	int rc = conduit_read_wait(f, buf, cap, got, timeout_ms);
	if (rc == CONDUIT_OK)
		return 1;
	if (rc == CONDUIT_EOF)
		return 0;
	return bench_fail("conduit_read_wait: %s",
	                  bench_cerr(conduit_flow_error(f), rc));
}

int link_check_sink(const struct bench_report *rep, uint64_t total)
{
	if (rep->bad_at != UINT64_MAX)
		return bench_fail("byte mismatch: the receiver saw a wrong "
		                  "byte at offset %" PRIu64,
		                  rep->bad_at);
	if (rep->count != total)
		return bench_fail("the receiver counted %" PRIu64
		                  " bytes, %" PRIu64 " were sent",
		                  rep->count, total);
	return 0;
}

int link_check_count(const struct bench_report *rep, uint64_t want,
                     const char *who, const char *what)
{
	if (rep->count != want)
		return bench_fail("%s %" PRIu64 " %s, not %" PRIu64, who,
		                  rep->count, what, want);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Forked processes                                                    */

volatile sig_atomic_t bench_child_pid;

void bench_child_setup(pid_t parent, int cpu)
{
#ifdef __linux__
	prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
	if (getppid() != parent)
		_exit(1); /* the parent died before prctl took hold */
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	alarm(CHILD_WATCHDOG_S);
	bench_child_pid = 0;
	bench_pin(cpu);
}

int bench_child_report(int wfd, const struct bench_report *r)
{
	ssize_t n;
	do
		n = write(wfd, r, sizeof(*r));
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)sizeof(*r) ? 0 : -1;
}

static int child_recv(struct bench_child *c, struct bench_report *rep)
{
	struct pollfd pf = {.fd = c->rfd, .events = POLLIN};
	size_t have = 0;
	memset(rep, 0, sizeof(*rep));
	for (int pass = 0; have < sizeof(*rep) && pass < 1000; pass++) {
		int r = poll(&pf, 1, CHILD_TIMEOUT_MS);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return bench_fail("no word from the %s server",
			                  r == 0 ? "silent" : "unreachable");
		ssize_t n =
		    read(c->rfd, (char *)rep + have, sizeof(*rep) - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return bench_fail("the server process ended "
			                  "unexpectedly");
		have += (size_t)n;
	}
	if (have < sizeof(*rep))
		return bench_fail("the server's report was cut short");
	rep->text[sizeof(rep->text) - 1] = '\0';
	if (rep->kind == MSG_ERROR)
		return bench_fail("server: %s", rep->text);
	return 0;
}

void bench_child_abort(struct bench_child *c)
{
	struct pollfd pf = {.fd = c->rfd, .events = POLLIN};
	struct bench_report rep;
	char mine[sizeof(bench_errmsg)];
	snprintf(mine, sizeof(mine), "%s", bench_errmsg);
	if (c->rfd >= 0 && poll(&pf, 1, 200) > 0 &&
	    read(c->rfd, &rep, sizeof(rep)) == (ssize_t)sizeof(rep) &&
	    rep.kind == MSG_ERROR) {
		rep.text[sizeof(rep.text) - 1] = '\0';
		bench_fail("%.300s (server: %.200s)", mine, rep.text);
	}
	if (c->pid > 0) {
		int st = 0;
		snprintf(mine, sizeof(mine), "%s", bench_errmsg);
		if (waitpid(c->pid, &st, WNOHANG) == c->pid) {
			/* It ended before we gave up on it: say how. */
			bool sig = WIFSIGNALED(st);
			if (sig || (WIFEXITED(st) && WEXITSTATUS(st) != 0))
				bench_fail("%.300s (the server %s %d)", mine,
				           sig ? "was killed by signal"
				               : "exited with status",
				           sig ? WTERMSIG(st)
				               : WEXITSTATUS(st));
		} else {
			kill(c->pid, SIGKILL);
			waitpid(c->pid, NULL, 0);
		}
	}
	if (c->rfd >= 0)
		close(c->rfd);
	c->pid = -1;
	c->rfd = -1;
	bench_child_pid = 0;
}

int bench_child_start(struct bench_child *c, int cpu,
                      int (*serve)(const void *job, int wfd), const void *job,
                      struct bench_report *ready)
{
	int pfd[2];
	c->pid = -1;
	c->rfd = -1;
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return bench_fail("pipe: %s", strerror(errno));
	pid_t parent = getpid();
	fflush(NULL); /* or the child's copy of stdout could print again */
	pid_t pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return bench_fail("fork: %s", strerror(errno));
	}
	if (pid == 0) {
		close(pfd[0]);
		bench_child_setup(parent, cpu);
		bench_errmsg[0] = '\0';
		_exit(serve(job, pfd[1]));
	}
	close(pfd[1]);
	c->pid = pid;
	c->rfd = pfd[0];
	bench_child_pid = pid;
	if (child_recv(c, ready) < 0) {
		bench_child_abort(c);
		return -1;
	}
	if (ready->kind != MSG_READY) {
		bench_child_abort(c);
		return bench_fail("the server did not say where it listens");
	}
	return 0;
}

int bench_child_finish(struct bench_child *c, struct bench_report *rep)
{
	if (child_recv(c, rep) < 0) {
		bench_child_abort(c);
		return -1;
	}
	/* The child closes its end as it exits: wait for that, then reap. */
	struct pollfd pf = {.fd = c->rfd, .events = POLLIN};
	char ch;
	for (int pass = 0; pass < 100; pass++) {
		int r = poll(&pf, 1, CHILD_TIMEOUT_MS);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || read(c->rfd, &ch, 1) <= 0)
			break;
	}
	close(c->rfd);
	c->rfd = -1;
	int st = 0;
	pid_t w;
	do
		w = waitpid(c->pid, &st, 0);
	while (w < 0 && errno == EINTR);
	c->pid = -1;
	bench_child_pid = 0;
	if (w < 0)
		return bench_fail("waitpid: %s", strerror(errno));
	if (WIFSIGNALED(st))
		return bench_fail("the server was killed by signal %d (%s)",
		                  WTERMSIG(st), strsignal(WTERMSIG(st)));
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return bench_fail("the server exited with status %d",
		                  WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	return 0;
}
