/*
 * xt - the real-Xen suite's test program, linked statically so that the
 * dom0 and domU images need no libraries for it.  One side of a case per
 * run; tests/xen/run pairs them across the two domains.
 *
 * Streams carry a fixed pattern (byte i depends on i alone), so a receiver
 * checks every byte it gets without being told what was sent.  Each run
 * prints one line starting "xt:" and exits 0 only when its side of the
 * case held.  Every wait is bounded by XT_TIMEOUT_MS (default 20000) of
 * no progress.
 *
 *   xt raw-listen CLIENT PATH send|recv BYTES    plain libxenvchan server
 *   xt raw-connect SERVER PATH send|recv BYTES   plain libxenvchan client
 *   xt listen URI send|recv BYTES [CA CERT KEY]  conduit, accepts one flow
 *   xt connect URI send|recv BYTES [CA]          conduit
 *   xt register NAME SECONDS   hold a vchan name for SECONDS
 *   xt lookup NAME DOMID       the name must resolve to DOMID
 *   xt claim NAME              registering NAME must be refused
 *   xt domid                   print this domain's id from XenStore
 *   xt agent                   the domU's agent (see cmd_agent)
 *   xt wait-key PATH SECONDS   print PATH's value once it exists
 *
 * BYTES 0 for recv means "until the stream fails": the line then says how
 * it failed and how long after the last byte (the destroyed-peer case).
 */
#include <conduit/conduit.h>
#include <conduit/tls.h>
#include <conduit/vchan.h>

#include <libxenvchan.h>
#include <xenstore.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define XT_CHUNK (64 * 1024)
#define XT_RING  (1024 * 1024)

static int xt_timeout_ms = 20000;
/* XT_EXPECT=CONDUIT_ERR_...: this side must fail with that status. */
static const char *xt_expect;

/* A failure: fine only when it is the one XT_EXPECT names. */
static int failed(int st, const char *what, const char *why)
{
	if (xt_expect != NULL &&
	    strcmp(conduit_status_name(st), xt_expect) == 0) {
		printf("xt: OK failed as expected, %s: %s: %s\n", what,
		       conduit_status_name(st), why);
		return 0;
	}
	printf("xt: FAIL %s: %s: %s\n", what, conduit_status_name(st), why);
	return 1;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint8_t pattern(uint64_t i)
{
	return (uint8_t)(i * 7u + (i >> 9) * 13u + (i >> 17));
}

static void fill(uint8_t *buf, uint64_t off, size_t n)
{
	for (size_t k = 0; k < n; k++)
		buf[k] = pattern(off + k);
}

/* Offset of the first wrong byte, or -1. */
static int64_t check(const uint8_t *buf, uint64_t off, size_t n)
{
	for (size_t k = 0; k < n; k++)
		if (buf[k] != pattern(off + k))
			return (int64_t)(off + k);
	return -1;
}

static uint64_t parse_bytes(const char *s)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || end == s) {
		fprintf(stderr, "xt: bad byte count '%s'\n", s);
		exit(2);
	}
	if (*end == 'K')
		v <<= 10;
	else if (*end == 'M')
		v <<= 20;
	return v;
}

static void report_rate(const char *what, uint64_t n, double t0, double t1)
{
	double secs = t1 > t0 ? t1 - t0 : 1e-9;
	printf("xt: OK %s %" PRIu64 " bytes in %.3f s, %.1f MiB/s\n", what, n,
	       secs, (double)n / 1048576.0 / secs);
}

/* ---- plain libxenvchan ------------------------------------------- */

/* Wait until the ring can move data (or is closed), bounded by time. */
static int raw_wait(struct libxenvchan *v, int want_write, double deadline)
{
	for (;;) {
		if (!libxenvchan_is_open(v))
			return -1;
		if (want_write ? libxenvchan_buffer_space(v) > 0
		               : libxenvchan_data_ready(v) > 0)
			return 0;
		if (now_s() > deadline)
			return -2;
		/* libxenvchan_wait blocks on the event channel; the fd lets us
		 * bound the wait. */
		fd_set rd;
		int fd = libxenvchan_fd_for_select(v);
		FD_ZERO(&rd);
		FD_SET(fd, &rd);
		struct timeval tv = {0, 200000};
		if (select(fd + 1, &rd, NULL, NULL, &tv) > 0)
			libxenvchan_wait(v);
	}
}

static int raw_run(int server, int domid, const char *path, int send,
                   uint64_t total)
{
	struct libxenvchan *v;
	double deadline = now_s() + xt_timeout_ms / 1000.0;
	if (server) {
		v = libxenvchan_server_init(NULL, domid, path, XT_RING,
		                            XT_RING);
	} else {
		/* The server may not be there yet: retry until the deadline. */
		for (;;) {
			v = libxenvchan_client_init(NULL, domid, path);
			if (v != NULL || now_s() > deadline)
				break;
			usleep(100000);
		}
	}
	if (v == NULL) {
		printf("xt: FAIL %s %s: %s\n",
		       server ? "server_init" : "client_init", path,
		       strerror(errno));
		return 1;
	}
	/* A server's ring goes live when the client maps it. */
	while (libxenvchan_is_open(v) == 2 && now_s() < deadline) {
		fd_set rd;
		int fd = libxenvchan_fd_for_select(v);
		FD_ZERO(&rd);
		FD_SET(fd, &rd);
		struct timeval tv = {0, 200000};
		if (select(fd + 1, &rd, NULL, NULL, &tv) > 0)
			libxenvchan_wait(v);
	}
	v->blocking = 0;
	static uint8_t buf[XT_CHUNK];
	uint64_t done = 0;
	double t0 = 0, t1 = 0;
	int rc = 0;
	while (done < total) {
		size_t n =
		    total - done < XT_CHUNK ? (size_t)(total - done) : XT_CHUNK;
		int w = raw_wait(v, send, now_s() + xt_timeout_ms / 1000.0);
		if (w < 0) {
			printf("xt: FAIL after %" PRIu64 " bytes: %s\n", done,
			       w == -1 ? "peer closed" : "timed out");
			rc = 1;
			break;
		}
		if (t0 == 0)
			t0 = now_s();
		int got;
		if (send) {
			fill(buf, done, n);
			got = libxenvchan_write(v, buf, n);
		} else {
			got = libxenvchan_read(v, buf, n);
		}
		if (got < 0) {
			printf("xt: FAIL %s after %" PRIu64 " bytes\n",
			       send ? "write" : "read", done);
			rc = 1;
			break;
		}
		if (!send) {
			int64_t bad = check(buf, done, (size_t)got);
			if (bad >= 0) {
				printf("xt: FAIL wrong byte at offset %" PRId64
				       "\n",
				       bad);
				rc = 1;
				break;
			}
		}
		done += (uint64_t)got;
		t1 = now_s();
	}
	if (rc == 0 && send) {
		/* Let the reader drain the ring before closing it. */
		while (libxenvchan_is_open(v) &&
		       libxenvchan_buffer_space(v) < XT_RING &&
		       now_s() < t1 + xt_timeout_ms / 1000.0)
			usleep(20000);
	}
	if (rc == 0)
		report_rate(send ? "raw sent" : "raw received", done, t0, t1);
	libxenvchan_close(v);
	return rc;
}

/* ---- conduit ------------------------------------------------------ */

static int flow_run(conduit_flow *f, int send, uint64_t total)
{
	static uint8_t buf[XT_CHUNK];
	uint64_t done = 0;
	double t0 = now_s(), t1 = t0, last = t0;
	int st = CONDUIT_OK;
	while (total == 0 || done < total) {
		size_t n = XT_CHUNK;
		if (total != 0 && total - done < n)
			n = (size_t)(total - done);
		size_t got = 0;
		if (send) {
			fill(buf, done, n);
			st = conduit_write_all(f, buf, n, &got, xt_timeout_ms);
		} else {
			st = conduit_read_wait(f, buf, n, &got, xt_timeout_ms);
			int64_t bad = check(buf, done, got);
			if (bad >= 0) {
				printf("xt: FAIL wrong byte at offset %" PRId64
				       "\n",
				       bad);
				return 1;
			}
		}
		done += got;
		if (got > 0)
			last = now_s();
		if (st != CONDUIT_OK)
			break;
		t1 = now_s();
	}
	if (total == 0) {
		/* Run until the stream fails: say how and how fast. */
		printf("xt: ENDED %s after %" PRIu64
		       " bytes, %.1f s after the last byte: %s\n",
		       conduit_status_name(st), done, now_s() - last,
		       conduit_flow_error(f));
		return st == CONDUIT_ERR_TIMED_OUT ? 1 : 0;
	}
	if (st != CONDUIT_OK) {
		char what[64];
		snprintf(what, sizeof(what),
		         "after %" PRIu64 " of %" PRIu64 " bytes", done, total);
		return failed(st, what, conduit_flow_error(f));
	}
	if (send) {
		/* Tell the end if the wire can, then wait for the peer to
		 * close, so that nothing is torn down under its reads. */
		int sh = conduit_shutdown(f, CONDUIT_SHUT_WR);
		if (sh != CONDUIT_OK && sh != CONDUIT_ERR_UNSUPPORTED) {
			printf("xt: FAIL shutdown: %s\n",
			       conduit_flow_error(f));
			return 1;
		}
		size_t got;
		st =
		    conduit_read_wait(f, buf, sizeof(buf), &got, xt_timeout_ms);
		if (st == CONDUIT_ERR_TIMED_OUT) {
			printf("xt: FAIL the peer did not close: %s\n",
			       conduit_flow_error(f));
			return 1;
		}
	}
	if (xt_expect != NULL) {
		printf("xt: FAIL expected %s, but %" PRIu64 " bytes moved\n",
		       xt_expect, done);
		return 1;
	}
	report_rate(send ? "sent" : "received", done, t0, t1);
	return 0;
}

static int ctx_setup(conduit_ctx **ctx, const char *ca, const char *cert,
                     const char *key)
{
	if (conduit_ctx_new(ctx) != CONDUIT_OK) {
		printf("xt: FAIL no context\n");
		return 1;
	}
	conduit_ctx_set_connect_timeout(*ctx, (uint32_t)xt_timeout_ms);
	if (ca != NULL && conduit_tls_set_ca_file(*ctx, ca) != CONDUIT_OK) {
		printf("xt: FAIL CA %s: %s\n", ca, conduit_ctx_error(*ctx));
		return 1;
	}
	if (cert != NULL &&
	    conduit_tls_set_cert_file(*ctx, cert, key, NULL) != CONDUIT_OK) {
		printf("xt: FAIL certificate %s: %s\n", cert,
		       conduit_ctx_error(*ctx));
		return 1;
	}
	return 0;
}

static int tls_note(conduit_flow *f)
{
	char subject[256];
	if (!conduit_tls_is_tls(f))
		return 0;
	if (conduit_tls_peer_subject(f, subject, sizeof(subject)) == CONDUIT_OK)
		printf("xt: TLS peer \"%s\"\n", subject);
	return 0;
}

static int cmd_listen(int argc, char **argv)
{
	conduit_ctx *ctx;
	conduit_listener *l;
	conduit_flow *f;
	if (ctx_setup(&ctx, argc > 4 ? argv[4] : NULL,
	              argc > 5 ? argv[5] : NULL, argc > 6 ? argv[6] : NULL))
		return 1;
	if (conduit_listen(&l, ctx, argv[1]) != CONDUIT_OK) {
		printf("xt: FAIL listen %s: %s\n", argv[1],
		       conduit_ctx_error(ctx));
		return 1;
	}
	fprintf(stderr, "xt: listening on %s\n", conduit_listener_uri(l));
	int st = conduit_accept_wait(&f, l, xt_timeout_ms);
	if (st != CONDUIT_OK) {
		printf("xt: FAIL accept %s: %s: %s\n", argv[1],
		       conduit_status_name(st), conduit_listener_error(l));
		return 1;
	}
	conduit_listener_free(l);
	int rc =
	    flow_run(f, strcmp(argv[2], "send") == 0, parse_bytes(argv[3]));
	tls_note(f);
	conduit_close_wait(f, 2000);
	conduit_flow_free(f);
	conduit_ctx_free(ctx);
	return rc;
}

static int cmd_connect(int argc, char **argv)
{
	conduit_ctx *ctx;
	conduit_flow *f;
	if (ctx_setup(&ctx, argc > 4 ? argv[4] : NULL, NULL, NULL))
		return 1;
	/* A listener in the other domain may not be up yet. */
	double deadline = now_s() + xt_timeout_ms / 1000.0;
	int st;
	for (;;) {
		int left = (int)((deadline - now_s()) * 1000);
		st =
		    conduit_connect_wait(&f, ctx, argv[1], left > 1 ? left : 1);
		if (st == CONDUIT_OK || now_s() > deadline ||
		    st == CONDUIT_ERR_CERT || st == CONDUIT_ERR_TLS)
			break;
		usleep(200000);
	}
	if (st != CONDUIT_OK)
		return failed(st, "connect", conduit_ctx_error(ctx));
	int rc =
	    flow_run(f, strcmp(argv[2], "send") == 0, parse_bytes(argv[3]));
	tls_note(f);
	conduit_close_wait(f, 2000);
	conduit_flow_free(f);
	conduit_ctx_free(ctx);
	return rc;
}

static int cmd_names(int argc, char **argv)
{
	conduit_ctx *ctx;
	unsigned domid;
	int st, rc = 1;
	if (ctx_setup(&ctx, NULL, NULL, NULL))
		return 1;
	if (strcmp(argv[0], "domid") == 0) {
		st = conduit_vchan_local_domid(ctx, &domid);
		if (st == CONDUIT_OK)
			printf("%u\n", domid);
		else
			printf("xt: FAIL domid: %s\n", conduit_ctx_error(ctx));
		rc = st != CONDUIT_OK;
	} else if (strcmp(argv[0], "register") == 0 && argc == 3) {
		st = conduit_vchan_register_name(ctx, argv[1]);
		if (st == CONDUIT_OK) {
			printf("xt: OK registered %s\n", argv[1]);
			fflush(stdout);
			sleep((unsigned)atoi(argv[2]));
			rc = 0;
		} else {
			rc = failed(st, "register", conduit_ctx_error(ctx));
		}
	} else if (strcmp(argv[0], "lookup") == 0 && argc == 3) {
		st = conduit_vchan_lookup(ctx, argv[1], &domid);
		if (st != CONDUIT_OK)
			printf("xt: FAIL lookup %s: %s\n", argv[1],
			       conduit_ctx_error(ctx));
		else if (domid != (unsigned)atoi(argv[2]))
			printf("xt: FAIL lookup %s gave %u, not %s\n", argv[1],
			       domid, argv[2]);
		else
			printf("xt: OK %s is domain %u\n", argv[1], domid);
		rc = st != CONDUIT_OK || domid != (unsigned)atoi(argv[2]);
	} else if (strcmp(argv[0], "claim") == 0 && argc == 2) {
		st = conduit_vchan_register_name(ctx, argv[1]);
		if (st == CONDUIT_ERR_ADDR_IN_USE) {
			printf("xt: OK refused: %s\n", conduit_ctx_error(ctx));
			rc = 0;
		} else {
			printf("xt: FAIL claiming %s gave %s: %s\n", argv[1],
			       conduit_status_name(st),
			       st == CONDUIT_OK ? "taken"
			                        : conduit_ctx_error(ctx));
		}
	} else {
		fprintf(stderr, "xt: bad arguments for %s\n", argv[0]);
		rc = 2;
	}
	conduit_ctx_free(ctx);
	return rc;
}

/* ---- running the suite ----------------------------------------- */

/*
 * The domU's agent.  dom0 writes a shell command to data/xt/cmd/N under
 * this domain's own XenStore node (which the domain may read); the agent
 * starts it at once (so both ends of a case run together), kills it after
 * 90 s, and writes "STATUS|its last xt: line" to data/xt/res/N.  First it
 * writes data/xt/ready: "HYPERVISOR DOMID UPTIME", as /sys/hypervisor/type,
 * this domain's XenStore node and /proc/uptime say.  Polling XenStore in
 * process every 50 ms costs the emulated CPU far less than a xenstore-read per
 * poll.
 */
static int cmd_agent(void)
{
	struct xs_handle *xs = xs_open(0);
	if (xs == NULL) {
		printf("xt: FAIL agent: no XenStore: %s\n", strerror(errno));
		return 1;
	}
	char hv[32] = "none";
	FILE *fp = fopen("/sys/hypervisor/type", "r");
	if (fp != NULL) {
		if (fscanf(fp, "%31s", hv) != 1)
			snprintf(hv, sizeof(hv), "unreadable");
		fclose(fp);
	}
	unsigned len;
	char *domid = xs_read(xs, XBT_NULL, "domid", &len);
	char ready[96], up[32] = "?";
	fp = fopen("/proc/uptime", "r");
	if (fp != NULL) {
		if (fscanf(fp, "%31s", up) != 1)
			snprintf(up, sizeof(up), "?");
		fclose(fp);
	}
	snprintf(ready, sizeof(ready), "%s %s %s", hv,
	         domid != NULL ? domid : "?", up);
	free(domid);
	xs_write(xs, XBT_NULL, "data/xt/ready", ready, strlen(ready));
	printf("xt: agent up: %s\n", ready);
	struct {
		pid_t pid;
		unsigned n;
		double start;
	} jobs[64];
	size_t njobs = 0;
	for (unsigned n = 1;;) {
		char key[64];
		snprintf(key, sizeof(key), "data/xt/cmd/%u", n);
		char *cmd = xs_read(xs, XBT_NULL, key, &len);
		if (cmd != NULL && njobs < 64) {
			char out[32];
			snprintf(out, sizeof(out), "/tmp/out.%u", n);
			pid_t pid = fork();
			if (pid == 0) {
				int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC,
				              0644);
				dup2(fd, 1);
				dup2(fd, 2);
				execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
				_exit(127);
			}
			jobs[njobs].pid = pid;
			jobs[njobs].n = n;
			jobs[njobs].start = now_s();
			njobs++;
			n++;
		}
		free(cmd);
		for (size_t i = 0; i < njobs;) {
			int status;
			if (now_s() - jobs[i].start > 90)
				kill(jobs[i].pid, SIGKILL);
			if (waitpid(jobs[i].pid, &status, WNOHANG) !=
			    jobs[i].pid) {
				i++;
				continue;
			}
			char out[32], line[512] = "", res[600];
			snprintf(out, sizeof(out), "/tmp/out.%u", jobs[i].n);
			fp = fopen(out, "r");
			char buf[512];
			while (fp != NULL && fgets(buf, sizeof(buf), fp)) {
				buf[strcspn(buf, "\n")] = 0;
				if (strncmp(buf, "xt:", 3) == 0 || line[0] == 0)
					snprintf(line, sizeof(line), "%s", buf);
			}
			if (fp != NULL)
				fclose(fp);
			int rc = WIFEXITED(status) ? WEXITSTATUS(status)
			                           : 128 + WTERMSIG(status);
			snprintf(res, sizeof(res), "%d|%s", rc, line);
			snprintf(key, sizeof(key), "data/xt/res/%u", jobs[i].n);
			xs_write(xs, XBT_NULL, key, res, strlen(res));
			jobs[i] = jobs[--njobs];
		}
		usleep(50000);
	}
}

/* dom0's side of the agent: wait for a key, print its value. */
static int cmd_wait_key(const char *path, const char *secs)
{
	struct xs_handle *xs = xs_open(0);
	if (xs == NULL) {
		printf("xt: FAIL wait-key: no XenStore: %s\n", strerror(errno));
		return 1;
	}
	double deadline = now_s() + atof(secs);
	for (;;) {
		unsigned len;
		char *v = xs_read(xs, XBT_NULL, path, &len);
		if (v != NULL) {
			printf("%s\n", v);
			free(v);
			xs_close(xs);
			return 0;
		}
		if (now_s() > deadline)
			break;
		usleep(50000);
	}
	xs_close(xs);
	return 1;
}

int main(int argc, char **argv)
{
	const char *t = getenv("XT_TIMEOUT_MS");
	if (t != NULL && atoi(t) > 0)
		xt_timeout_ms = atoi(t);
	xt_expect = getenv("XT_EXPECT");
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2) {
		fprintf(stderr, "usage: see the top of tests/xen/xt.c\n");
		return 2;
	}
	const char *cmd = argv[1];
	if ((strcmp(cmd, "raw-listen") == 0 ||
	     strcmp(cmd, "raw-connect") == 0) &&
	    argc == 6)
		return raw_run(cmd[4] == 'l', atoi(argv[2]), argv[3],
		               strcmp(argv[4], "send") == 0,
		               parse_bytes(argv[5]));
	if (strcmp(cmd, "listen") == 0 && (argc == 5 || argc == 8))
		return cmd_listen(argc - 1, argv + 1);
	if (strcmp(cmd, "connect") == 0 && (argc == 5 || argc == 6))
		return cmd_connect(argc - 1, argv + 1);
	if (strcmp(cmd, "agent") == 0)
		return cmd_agent();
	if (strcmp(cmd, "wait-key") == 0 && argc == 4)
		return cmd_wait_key(argv[2], argv[3]);
	return cmd_names(argc - 1, argv + 1);
}
