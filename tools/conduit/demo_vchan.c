/*
 * demo_vchan.c - the demo's vchan legs: two processes playing two Xen
 * domains over the emulation in stubs/xen, and the hidden child mode
 * that plays one of them.
 */
#include "common.h"
#include "demo_int.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* ------------------------------------------------------------------ */
/* vchan legs: two processes, two emulated domains                      */

/* Reads lines from a child's output with a deadline. */
struct lines {
	int fd;
	char buf[8192];
	size_t len;
	bool eof;
};

/* 1 a line in out (newline removed), 0 end of file, -1 deadline passed. */
static int next_line(struct lines *lr, char *out, size_t cap, uint64_t deadline)
{
	for (;;) {
		char *nl = memchr(lr->buf, '\n', lr->len);
		if (nl != NULL || (lr->eof && lr->len > 0) ||
		    lr->len == sizeof(lr->buf)) {
			size_t n =
			    nl != NULL ? (size_t)(nl - lr->buf) : lr->len;
			size_t take = n < cap - 1 ? n : cap - 1;
			memcpy(out, lr->buf, take);
			out[take] = '\0';
			size_t drop = nl != NULL ? n + 1 : n;
			memmove(lr->buf, lr->buf + drop, lr->len - drop);
			lr->len -= drop;
			return 1;
		}
		if (lr->eof)
			return 0;
		uint64_t t = tool_now_ms();
		if (t >= deadline || stop_sig)
			return -1;
		struct pollfd pfd = {.fd = lr->fd, .events = POLLIN};
		uint64_t wait = deadline - t;
		int r = poll(&pfd, 1, wait > 100 ? 100 : (int)wait);
		if (r < 0 && errno != EINTR)
			return -1;
		if (r <= 0)
			continue;
		ssize_t got =
		    read(lr->fd, lr->buf + lr->len, sizeof(lr->buf) - lr->len);
		if (got > 0)
			lr->len += (size_t)got;
		else if (got == 0 || (errno != EINTR && errno != EAGAIN))
			lr->eof = true;
	}
}

struct child {
	pid_t pid;
	int in;
	struct lines out;
	int status;
	bool reaped;
};

static char *xstrcat3(const char *a, const char *b, const char *c)
{
	size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
	char *s = malloc(la + lb + lc + 1);
	if (s != NULL) {
		memcpy(s, a, la);
		memcpy(s + la, b, lb);
		memcpy(s + la + lb, c, lc + 1);
	}
	return s;
}

/* The environment of a domain: ours, with the emulation first on the
 * library path and the emulated host and domain id set. */
static char **child_env(const char *emu, const char *dir, unsigned domid)
{
	size_t n = 0;
	while (environ[n] != NULL)
		n++;
	char **env = calloc(n + 4, sizeof(char *));
	if (env == NULL)
		return NULL;
	size_t k = 0;
	const char *old = getenv("LD_LIBRARY_PATH");
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "LD_LIBRARY_PATH=", 16) != 0 &&
		    strncmp(environ[i], "CONDUIT_XEN_DIR=", 16) != 0 &&
		    strncmp(environ[i], "CONDUIT_XEN_DOMID=", 18) != 0)
			env[k++] = environ[i];
	char id[16];
	setf(id, sizeof(id), "%u", domid);
	char *lib = old != NULL && old[0] != '\0' ? xstrcat3(emu, ":", old)
	                                          : xstrcat3(emu, "", "");
	char *lp = lib ? xstrcat3("LD_LIBRARY_PATH=", lib, "") : NULL;
	free(lib);
	char *xd = xstrcat3("CONDUIT_XEN_DIR=", dir, "");
	char *xi = xstrcat3("CONDUIT_XEN_DOMID=", id, "");
	if (lp == NULL || xd == NULL || xi == NULL) {
		free(lp);
		free(xd);
		free(xi);
		free(env);
		return NULL;
	}
	env[k++] = lp;
	env[k++] = xd;
	env[k++] = xi;
	env[k] = NULL;
	return env;
}

static void free_env(char **env)
{
	if (env == NULL)
		return;
	/* Only the last three strings are ours. */
	size_t n = 0;
	while (env[n] != NULL)
		n++;
	for (size_t i = n >= 3 ? n - 3 : 0; i < n; i++)
		free(env[i]);
	free(env);
}

/* Run this program again as one domain of a vchan leg. */
static int spawn_peer(struct child *c, const char *role, const struct leg *lg,
                      uint64_t bytes, const char *dir, unsigned domid,
                      const char *emu, char *why, size_t whylen)
{
	memset(c, 0, sizeof(*c));
	c->pid = -1;
	c->in = c->out.fd = -1;
	int pin[2], pout[2];
	if (pipe2(pin, O_CLOEXEC) < 0) {
		setf(why, whylen, "pipe: %s", strerror(errno));
		return -1;
	}
	if (pipe2(pout, O_CLOEXEC) < 0) {
		setf(why, whylen, "pipe: %s", strerror(errno));
		close(pin[0]);
		close(pin[1]);
		return -1;
	}
	char nbytes[32];
	setf(nbytes, sizeof(nbytes), "%llu", (unsigned long long)bytes);
	char *argv[] = {"conduit",        "demo", "--peer", (char *)role,
	                (char *)lg->name, nbytes, NULL};
	char **env = child_env(emu, dir, domid);
	pid_t parent = getpid();
	pid_t pid = env != NULL ? fork() : -1;
	if (pid == 0) {
		/* Die with the demo, whatever happens to it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		signal(SIGPIPE, SIG_DFL);
		if (dup2(pin[0], 0) < 0 || dup2(pout[1], 1) < 0 ||
		    chdir(dir) < 0)
			_exit(127);
		execve("/proc/self/exe", argv, env);
		static const char m[] =
		    "conduit demo: cannot run /proc/self/exe "
		    "again for a vchan domain\n";
		if (write(2, m, sizeof(m) - 1) < 0)
			_exit(127);
		_exit(127);
	}
	int err = errno;
	free_env(env);
	close(pin[0]);
	close(pout[1]);
	if (pid < 0) {
		setf(why, whylen, "fork: %s",
		     env == NULL ? "out of memory" : strerror(err));
		close(pin[1]);
		close(pout[0]);
		return -1;
	}
	c->pid = pid;
	c->in = pin[1];
	c->out.fd = pout[0];
	return 0;
}

/* Reap c, killing it after the deadline.  Returns its wait status. */
static int reap(struct child *c, uint64_t deadline)
{
	if (c->pid <= 0 || c->reaped)
		return c->status;
	for (;;) {
		int st;
		pid_t r = waitpid(c->pid, &st, WNOHANG);
		if (r == c->pid) {
			c->status = st;
			break;
		}
		if (r < 0 && errno != EINTR) {
			c->status = -1;
			break;
		}
		if (tool_now_ms() >= deadline || stop_sig) {
			kill(c->pid, SIGKILL);
			while (waitpid(c->pid, &st, 0) < 0 && errno == EINTR)
				;
			c->status = st;
			break;
		}
		nap_ms(2);
	}
	c->reaped = true;
	if (c->in >= 0)
		close(c->in);
	if (c->out.fd >= 0)
		close(c->out.fd);
	c->in = c->out.fd = -1;
	return c->status;
}

static void describe_exit(char *buf, size_t len, const char *who, int st)
{
	if (st == -1)
		setf(buf, len, "the %s could not be waited for", who);
	else if (WIFSIGNALED(st))
		setf(buf, len, "the %s died of signal %d (%s)", who,
		     WTERMSIG(st), strsignal(WTERMSIG(st)));
	else if (WEXITSTATUS(st) == 127)
		setf(buf, len, "the %s could not be started", who);
	else
		setf(buf, len, "the %s exited with status %d", who,
		     WEXITSTATUS(st));
}

/* Send a domain its TLS material: "name length\n" and the bytes. */
static void send_creds(struct child *c, bool server)
{
	char blob[16384];
	size_t len = 0;
	const char *names[3] = {"ca", "cert", "key"};
	const char *vals[3] = {creds.ca, server ? creds.cert : "",
	                       server ? creds.key : ""};
	for (int i = 0; i < 3 && creds.made; i++) {
		size_t vl = strlen(vals[i]);
		int w = snprintf(blob + len, sizeof(blob) - len, "%s %zu\n",
		                 names[i], vl);
		if (w < 0 || (size_t)w + vl >= sizeof(blob) - len)
			break;
		len += (size_t)w;
		memcpy(blob + len, vals[i], vl);
		len += vl;
	}
	/* Less than a pipe's buffer: this never blocks. */
	size_t off = 0;
	while (off < len) {
		ssize_t w = write(c->in, blob + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	close(c->in);
	c->in = -1;
}

/* A "fail PHASE\tMESSAGE" line into res, as said by who. */
static void take_fail(struct result *res, const char *line, const char *who)
{
	const char *tab = strchr(line, '\t');
	if (tab == NULL) {
		setf(res->phase, sizeof(res->phase), "%s", who);
		setf(res->why, sizeof(res->why), "%s", line);
		return;
	}
	setf(res->phase, sizeof(res->phase), "%s %.*s", who, (int)(tab - line),
	     line);
	setf(res->why, sizeof(res->why), "%s", tab + 1);
}

void vchan_leg(struct result *res, const struct leg *lg, uint64_t bytes)
{
	char dir[PATH_MAX];
	struct child srv = {.pid = -1, .in = -1, .out = {.fd = -1}};
	struct child cli = {.pid = -1, .in = -1, .out = {.fd = -1}};
	char line[2048];
	bool served = false, got_result = false;
	/* Children stop themselves after STALL_MS without progress; this
	 * is the backstop should one hang, allowing 1 MiB/s. */
	uint64_t budget = 3 * (uint64_t)STALL_MS + bytes / 1049;

	setf(res->uri, sizeof(res->uri), "%s", lg->connect);
	setf(res->note_label, sizeof(res->note_label), "domains");
	setf(res->note, sizeof(res->note),
	     "server: domain 1, client: domain 2, two processes on the Xen "
	     "emulation");
	res->out = O_FAIL;
	setf(res->phase, sizeof(res->phase), "setup");

	/* The emulated host: grant pages and XenStore are files, so on a
	 * RAM file system when there is one, as Xen's are memory (on a
	 * disk, connecting is several times slower). */
	struct stat shm;
	int made;
	if (stat("/dev/shm", &shm) == 0 && S_ISDIR(shm.st_mode) &&
	    access("/dev/shm", W_OK | X_OK) == 0) {
		setf(dir, sizeof(dir), "/dev/shm/conduit-demo-%s-XXXXXX",
		     lg->name);
		made = mkdtemp(dir) != NULL ? 0 : -1;
	} else {
		setf(dir, sizeof(dir), "%s/xen-%s", tmp_dir, lg->name);
		made = mkdir(dir, 0700);
	}
	if (made < 0) {
		setf(res->why, sizeof(res->why), "mkdir %s: %s", dir,
		     strerror(errno));
		return;
	}
	if (strcmp(lg->name, "rules") == 0) {
		char path[PATH_MAX + 16];
		setf(path, sizeof(path), "%s/" RULES_FILE, dir);
		FILE *f = fopen(path, "w");
		bool ok = f != NULL && fputs(RULES_TEXT, f) >= 0;
		if (f != NULL && fclose(f) != 0)
			ok = false;
		if (!ok) {
			setf(res->why, sizeof(res->why), "%s: %s", path,
			     strerror(errno));
			goto out;
		}
		char rules[80];
		setf(rules, sizeof(rules), "%s", RULES_TEXT);
		rules[strcspn(rules, "\n")] = '\0';
		setf(res->note_label, sizeof(res->note_label), "rules");
		setf(res->note, sizeof(res->note), RULES_FILE ": %s", rules);
	}
	const char *emu = tool_xen_emulation_dir();
	char probe[PATH_MAX + 32];
	setf(probe, sizeof(probe), "%s/libxengnttab.so.1", emu);
	if (emu[0] == '\0' || access(probe, R_OK) != 0) {
		setf(res->why, sizeof(res->why),
		     "the Xen emulation is not in \"%s\" (build the xenemu "
		     "target, or set CONDUIT_XEN_EMULATION to its directory)",
		     emu);
		goto out;
	}

	setf(res->phase, sizeof(res->phase), "server start");
	if (spawn_peer(&srv, "server", lg, bytes, dir, 1, emu, res->why,
	               sizeof(res->why)) < 0)
		goto out;
	send_creds(&srv, true);
	uint64_t deadline = tool_now_ms() + (uint64_t)STALL_MS;
	for (;;) {
		int r = next_line(&srv.out, line, sizeof(line), deadline);
		if (r < 0) {
			if (stop_sig)
				setf(res->why, sizeof(res->why), "interrupted");
			else
				setf(res->why, sizeof(res->why),
				     "timed out after %d s waiting for the "
				     "server to listen",
				     STALL_MS / 1000);
			goto out;
		}
		if (r == 0) {
			describe_exit(res->why, sizeof(res->why), "server",
			              reap(&srv, tool_now_ms() + 2000));
			goto out;
		}
		if (strcmp(line, "ready") == 0)
			break;
		if (strncmp(line, "fail ", 5) == 0) {
			take_fail(res, line + 5, "server");
			goto out;
		}
	}

	setf(res->phase, sizeof(res->phase), "client start");
	if (spawn_peer(&cli, "client", lg, bytes, dir, 2, emu, res->why,
	               sizeof(res->why)) < 0)
		goto out;
	send_creds(&cli, false);
	res->why[0] = '\0';
	deadline = tool_now_ms() + budget;
	for (int r;
	     (r = next_line(&cli.out, line, sizeof(line), deadline)) != 0;) {
		if (r < 0) {
			setf(res->phase, sizeof(res->phase), "client");
			if (stop_sig)
				setf(res->why, sizeof(res->why), "interrupted");
			else
				setf(res->why, sizeof(res->why),
				     "timed out after %llu s waiting for the "
				     "client",
				     (unsigned long long)(budget / 1000));
			goto out;
		}
		char *v = strchr(line, ' ');
		v = v != NULL ? v + 1 : line + strlen(line);
		if (strncmp(line, "uri ", 4) == 0)
			setf(res->uri, sizeof(res->uri), "%s", v);
		else if (strncmp(line, "explain ", 8) == 0)
			setf(res->explain, sizeof(res->explain), "%s", v);
		else if (strncmp(line, "endpoint ", 9) == 0)
			setf(res->endpoint, sizeof(res->endpoint), "%s", v);
		else if (strncmp(line, "tls ", 4) == 0)
			setf(res->tls, sizeof(res->tls), "%s", v);
		else if (strncmp(line, "fail ", 5) == 0)
			take_fail(res, v, "client");
		else if (strncmp(line, "result ", 7) == 0) {
			unsigned long long b = 0;
			got_result = sscanf(v, "%llu %lf %lf %d %lf", &b,
			                    &res->secs, &res->rtt_us,
			                    &res->rtt_n, &res->setup_ms) == 5;
			res->bytes = b;
		}
	}
	int cst = reap(&cli, tool_now_ms() + 2000);

	/* The server says how it ended once the client is done: at once
	 * after a good exchange; after a failed one it may be waiting for a
	 * client that is gone, so it gets a moment to report, then stops. */
	deadline = tool_now_ms() +
	           (got_result && cst == 0 ? (uint64_t)STALL_MS : 1000u * SLOW);
	char srv_fail[sizeof(line)] = "";
	for (int r;
	     (r = next_line(&srv.out, line, sizeof(line), deadline)) > 0;) {
		if (strncmp(line, "served ", 7) == 0)
			served = true;
		else if (strncmp(line, "fail ", 5) == 0)
			setf(srv_fail, sizeof(srv_fail), "%s", line + 5);
	}
	int sst = reap(&srv, tool_now_ms() + 2000);

	if (got_result && served && cst == 0 && sst == 0) {
		res->out = O_PASS;
		res->phase[0] = res->why[0] = '\0';
		goto out;
	}
	if (res->why[0] == '\0' && srv_fail[0] != '\0') {
		take_fail(res, srv_fail, "server");
	} else if (res->why[0] != '\0' && srv_fail[0] != '\0') {
		size_t l = strlen(res->why);
		const char *tab = strchr(srv_fail, '\t');
		setf(res->why + l, sizeof(res->why) - l, " (server: %s)",
		     tab != NULL ? tab + 1 : srv_fail);
	} else if (res->why[0] == '\0') {
		bool cli_bad = cst != 0;
		setf(res->phase, sizeof(res->phase), "%s",
		     cli_bad ? "client exit" : "server exit");
		describe_exit(res->why, sizeof(res->why),
		              cli_bad ? "client" : "server",
		              cli_bad ? cst : sst);
	}
out:
	reap(&cli, tool_now_ms() + 1000);
	reap(&srv, tool_now_ms() + 1000);
	tool_rmtree(dir);
}

/* ------------------------------------------------------------------ */
/* The children (hidden mode: conduit demo --peer ROLE LEG BYTES)      */

/* Read the TLS material sent on standard input. */
static int read_creds(char *why, size_t whylen)
{
	static char blob[16384];
	size_t len = 0;
	for (;;) {
		ssize_t r = read(0, blob + len, sizeof(blob) - 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
		if (len == sizeof(blob) - 1)
			break;
	}
	blob[len] = '\0';
	const char *p = blob, *end = blob + len;
	while (p < end) {
		char name[16];
		size_t vl = 0;
		int used = 0;
		if (sscanf(p, "%15s %zu\n%n", name, &vl, &used) != 2 ||
		    used <= 0 || vl >= sizeof(creds.ca) ||
		    vl > (size_t)(end - p - used)) {
			setf(why, whylen,
			     "garbled TLS material on standard input");
			return -1;
		}
		p += used;
		char *dst = strcmp(name, "ca") == 0     ? creds.ca
		            : strcmp(name, "cert") == 0 ? creds.cert
		            : strcmp(name, "key") == 0  ? creds.key
		                                        : NULL;
		if (dst != NULL) {
			memcpy(dst, p, vl);
			dst[vl] = '\0';
			creds.made = true;
		}
		p += vl;
	}
	return 0;
}

static void say(const char *key, const char *value)
{
	char v[1300];
	setf(v, sizeof(v), "%s", value);
	one_line(v);
	printf("%s%s%s\n", key, v[0] != '\0' ? " " : "", v);
	fflush(stdout);
}

static void say_fail(const char *phase, const char *why)
{
	char v[700];
	setf(v, sizeof(v), "%s", why);
	one_line(v);
	printf("fail %s\t%s\n", phase, v);
	fflush(stdout);
}

int peer_main(int argc, char **argv)
{
	if (argc != 5 || (strcmp(argv[2], "server") != 0 &&
	                  strcmp(argv[2], "client") != 0)) {
		fprintf(stderr,
		        "conduit demo: --peer is used by the demo itself "
		        "(--peer server|client LEG BYTES)\n");
		return 2;
	}
	bool server = strcmp(argv[2], "server") == 0;
	const struct leg *lg = leg_named(argv[3]);
	char *end = NULL;
	errno = 0;
	unsigned long long bytes = strtoull(argv[4], &end, 10);
	if (lg == NULL || lg->kind != K_VCHAN || errno != 0 || *end != '\0' ||
	    getenv("CONDUIT_XEN_DIR") == NULL) {
		fprintf(stderr,
		        "conduit demo: --peer: bad leg or byte count, or "
		        "CONDUIT_XEN_DIR unset\n");
		return 2;
	}
	char why[600];
	/* Only the emulation exports this: the real libraries would wait
	 * for a hypervisor that is not there. */
	if (dlsym(RTLD_DEFAULT, "conduit_xen_emulation") == NULL) {
		say_fail("setup", "the Xen emulation is not loaded (it must "
		                  "come first on LD_LIBRARY_PATH)");
		return 1;
	}
	if (read_creds(why, sizeof(why)) < 0) {
		say_fail("setup", why);
		return 1;
	}
	conduit_ctx *ctx = NULL;
	if (conduit_ctx_new(&ctx) != CONDUIT_OK) {
		say_fail("setup", "out of memory");
		return 1;
	}
#ifdef CONDUIT_HAVE_TLS
	/* Both sides trust the demo CA: no leg ever needs the system's CA
	 * bundle. */
	if (lg->tls && (!creds.made || ctx_use_creds(ctx, true, server, why,
	                                             sizeof(why)) < 0)) {
		say_fail("setup", creds.made ? why : "no TLS material given");
		conduit_ctx_free(ctx);
		return 1;
	}
#endif
	struct peer p;
	int status = 1;
	conduit_listener *l = NULL;
	if (peer_init(&p, server, bytes) < 0) {
		say_fail("setup", p.why);
		goto out;
	}
	struct run r = {.ctx = ctx};
	if (server) {
		if (conduit_listen(&l, ctx, lg->listen) != CONDUIT_OK) {
			say_fail("listen", conduit_ctx_error(ctx));
			goto out;
		}
		say("ready", "");
		r.l = l;
		r.srv = &p;
		run_loop(&r);
		if (p.st == ST_DONE) {
			char n[32];
			setf(n, sizeof(n), "%llu", (unsigned long long)p.moved);
			say("served", n);
			status = 0;
		} else {
			say_fail(step_name(p.failed_in), p.why);
		}
		goto out;
	}
	struct result res;
	memset(&res, 0, sizeof(res));
	if (strcmp(lg->name, "rules") == 0 &&
	    conduit_ctx_load_rules(ctx, RULES_FILE) != CONDUIT_OK) {
		say_fail("rules", conduit_ctx_error(ctx));
		goto out;
	}
	int rc = client_start(&res, &p, ctx, lg->connect);
	say("uri", res.uri);
	say("explain", res.explain);
	if (res.endpoint[0] != '\0')
		say("endpoint", res.endpoint);
	if (rc < 0) {
		say_fail(res.phase + 7 /* "client " */, res.why);
		goto out;
	}
	r.cli = &p;
	run_loop(&r);
	fill_result(&res, &p, NULL);
	if (res.tls[0] != '\0')
		say("tls", res.tls);
	if (res.out == O_PASS) {
		printf("result %llu %.6f %.3f %d %.3f\n",
		       (unsigned long long)res.bytes, res.secs, res.rtt_us,
		       res.rtt_n, res.setup_ms);
		fflush(stdout);
		status = 0;
	} else {
		say_fail(step_name(p.failed_in), p.why);
	}
out:
	peer_free(&p);
	conduit_listener_free(l);
	conduit_ctx_free(ctx);
	return status;
}
