/*
 * scale_idle.c - the heap bytes one connected, idle flow holds (see
 * scale.c).
 */
#include "scale.h"
#ifdef CONDUIT_HAVE_TLS
#include <conduit/tls.h>
#endif

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

/* Idle memory                                                         */

enum side { SIDE_CONNECTING, SIDE_ACCEPTED };

/*
 * Heap bytes per idle flow of one end (side), made by api; the other end
 * is a raw socket.  n pairs, one round trip each, then the heap is read
 * with every pair still open.  A first pair, made and freed before the
 * first reading, keeps one-time costs (the context's first resolution,
 * poll buffers) out of the figure.
 */
static int idle_run(enum api api, enum tr tr, enum side side, size_t n,
                    double *out)
{
	int rc = -1;
	struct addr a;
	if (make_addr(&a, tr, "idle.sock") < 0)
		return -1;
	conduit_ctx *ctx = NULL;
	conduit_listener *l = NULL;
	int lfd = -1;
	int *near = calloc(n + 1, sizeof(int)); /* the measured end (raw) */
	int *far = calloc(n + 1, sizeof(int));  /* the other end */
	conduit_flow **fl = calloc(n + 1, sizeof(*fl));
	if (near == NULL || far == NULL || fl == NULL) {
		scale_fail("out of memory");
		goto out;
	}
	for (size_t i = 0; i <= n; i++)
		near[i] = far[i] = -1;
	if (api == API_CONDUIT && conduit_ctx_new(&ctx) != CONDUIT_OK) {
		scale_fail("conduit_ctx_new failed");
		goto out;
	}
	if (api == API_CONDUIT && side == SIDE_ACCEPTED) {
		int r = conduit_listen(&l, ctx, a.uri);
		if (r != CONDUIT_OK) {
			scale_fail("listen %s: %s", a.uri,
			           bench_cerr(conduit_ctx_error(ctx), r));
			goto out;
		}
		if (tr == TR_TCP)
			set_port(&a, uri_port(conduit_listener_uri(l)));
	} else if ((lfd = raw_listen(&a)) < 0) {
		goto out;
	}

	long long h0 = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i == 1)
			h0 = heap_used();
		unsigned char b = (unsigned char)('a' + i % 26);
		bool cf = api == API_CONDUIT && side == SIDE_CONNECTING;
		bool af = api == API_CONDUIT && side == SIDE_ACCEPTED;
		/* The connecting end. */
		if (cf) {
			int r = conduit_connect(&fl[i], ctx, a.uri);
			if (r != CONDUIT_OK) {
				scale_fail(
				    "connect %s: %s", a.uri,
				    bench_cerr(conduit_ctx_error(ctx), r));
				goto out;
			}
		} else if (raw_connect_wait(&a, side == SIDE_CONNECTING
		                                    ? &near[i]
		                                    : &far[i]) < 0) {
			goto out;
		}
		/* The accepting end. */
		if (af) {
			int r = conduit_accept_wait(&fl[i], l, IO_MS);
			if (r != CONDUIT_OK) {
				scale_fail(
				    "accept %s: %s", a.uri,
				    bench_cerr(conduit_listener_error(l), r));
				goto out;
			}
		} else if (raw_accept_wait(lfd, side == SIDE_ACCEPTED
		                                    ? &near[i]
		                                    : &far[i]) < 0) {
			goto out;
		}
		/* One byte from the measured end, echoed by the other. */
		int r = fl[i] != NULL ? flow_send1(fl[i], b)
		                      : raw_send1(near[i], b);
		if (r == 0)
			r = raw_recv1(far[i], b);
		if (r == 0)
			r = raw_send1(far[i], b);
		if (r == 0)
			r = fl[i] != NULL ? flow_recv1(fl[i], b)
			                  : raw_recv1(near[i], b);
		if (r < 0) {
			scale_fail("idle %s flow %zu: the round trip failed",
			           scale_tr_name[tr], i);
			goto out;
		}
		if (i == 0) {
			/* The warm-up pair goes before the first reading. */
			if (fl[0] != NULL) {
				conduit_close(fl[0]);
				conduit_flow_free(fl[0]);
				fl[0] = NULL;
			}
			if (near[0] >= 0)
				close(near[0]);
			close(far[0]);
			near[0] = far[0] = -1;
		}
	}
	*out = (double)(heap_used() - h0) / (double)n;
	rc = 0;
out:
	for (size_t i = 0; fl != NULL && i <= n; i++) {
		if (fl[i] != NULL) {
			conduit_close(fl[i]);
			conduit_flow_free(fl[i]);
		}
		if (near[i] >= 0)
			close(near[i]);
		if (far[i] >= 0)
			close(far[i]);
	}
	free(near);
	free(far);
	free(fl);
	if (lfd >= 0)
		close(lfd);
	conduit_listener_free(l);
	conduit_ctx_free(ctx);
	if (tr == TR_UNIX)
		unlink(a.path);
	return rc;
}

#ifdef CONDUIT_HAVE_TLS
/*
 * tls+unix: both ends are conduit, in two processes, so each end's heap is
 * its own.  The child serves n + 1 flows one after another (the first is
 * the warm-up), reports its heap growth for the last n through a pipe and
 * holds them until the parent closes its end.  The server's session cache
 * is turned off (tickets stay on), so the figure is the flows' and not
 * the cache's.
 */
static int tls_child(const char *uri, const char *cert, const char *key,
                     size_t n, int rep, int ctl)
{
	conduit_ctx *ctx = NULL;
	conduit_listener *l = NULL;
	conduit_flow **fl = calloc(n + 1, sizeof(*fl));
	double per = -1;
	int st = 1;
	if (fl == NULL || conduit_ctx_new(&ctx) != CONDUIT_OK)
		goto report;
	if (conduit_tls_set_cert_pem(ctx, cert, strlen(cert), key, strlen(key),
	                             NULL) != CONDUIT_OK ||
	    conduit_tls_set_resumption(ctx, CONDUIT_TLS_RESUME_TICKETS) !=
	        CONDUIT_OK ||
	    conduit_listen(&l, ctx, uri) != CONDUIT_OK) {
		fprintf(stderr, "conduit-bench: tls server: %s\n",
		        conduit_ctx_error(ctx));
		goto report;
	}
	/* Ready: the parent may connect. */
	if (write(rep, "r", 1) != 1)
		goto report;
	long long h0 = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i == 1)
			h0 = heap_used();
		unsigned char b = 0;
		size_t got = 0;
		int rc = conduit_accept_wait(&fl[i], l, IO_MS);
		if (rc == CONDUIT_OK)
			rc = conduit_read_wait(fl[i], &b, 1, &got, IO_MS);
		if (rc == CONDUIT_OK)
			rc = conduit_write_all(fl[i], &b, 1, NULL, IO_MS);
		if (rc != CONDUIT_OK) {
			fprintf(
			    stderr, "conduit-bench: tls server flow %zu: %s\n",
			    i,
			    fl[i] != NULL
			        ? bench_cerr(conduit_flow_error(fl[i]), rc)
			        : bench_cerr(conduit_listener_error(l), rc));
			goto report;
		}
		if (i == 0) {
			conduit_close(fl[0]);
			conduit_flow_free(fl[0]);
			fl[0] = NULL;
		}
	}
	per = (double)(heap_used() - h0) / (double)n;
	st = 0;
report:
	if (write(rep, &per, sizeof(per)) != (ssize_t)sizeof(per))
		st = 1;
	/* Hold the flows until the parent has measured its own end. */
	struct pollfd p = {.fd = ctl, .events = POLLIN};
	poll(&p, 1, 2 * IO_MS);
	for (size_t i = 0; fl != NULL && i <= n; i++)
		conduit_flow_free(fl[i]);
	free(fl);
	conduit_listener_free(l);
	conduit_ctx_free(ctx);
	return st;
}

static int tls_idle_run(size_t n, double *client, double *server)
{
	const char *cert, *key, *why;
	if (bench_tls_identity(&cert, &key, &why) < 0)
		return scale_fail("tls certificate: %s", why);
	struct addr a;
	if (make_addr(&a, TR_UNIX, "tls.sock") < 0)
		return -1;
	char luri[URI_MAX_LEN + 32], uri[sizeof(luri) + 32];
	unix_uri(luri, sizeof(luri), "tls+unix", a.path);
	snprintf(uri, sizeof(uri), "%s?servername=bench.test", luri);
	int rep[2], ctl[2];
	if (pipe2(rep, O_CLOEXEC) < 0)
		return scale_fail("pipe: %s", strerror(errno));
	if (pipe2(ctl, O_CLOEXEC) < 0) {
		close(rep[0]);
		close(rep[1]);
		return scale_fail("pipe: %s", strerror(errno));
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		for (int i = 0; i < 2; i++) {
			close(rep[i]);
			close(ctl[i]);
		}
		return scale_fail("fork: %s", strerror(errno));
	}
	if (pid == 0) {
#ifdef __linux__
		prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
		alarm(120);
		close(rep[0]);
		close(ctl[1]);
		_exit(tls_child(luri, cert, key, n, rep[1], ctl[0]));
	}
	close(rep[1]);
	close(ctl[0]);

	int rc = -1;
	conduit_ctx *ctx = NULL;
	conduit_flow **fl = calloc(n + 1, sizeof(*fl));
	char ready = 0;
	double sper = -1;
	if (fl == NULL || conduit_ctx_new(&ctx) != CONDUIT_OK) {
		scale_fail("out of memory");
		goto out;
	}
	if (conduit_tls_set_ca_pem(ctx, cert, strlen(cert)) != CONDUIT_OK) {
		scale_fail("tls: %s", conduit_ctx_error(ctx));
		goto out;
	}
	if (read_full(rep[0], &ready, 1, IO_MS) < 0)
		goto out;
	long long h0 = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i == 1)
			h0 = heap_used();
		unsigned char b = (unsigned char)('A' + i % 26);
		int r = conduit_connect_wait(&fl[i], ctx, uri, IO_MS);
		if (r != CONDUIT_OK) {
			scale_fail("connect %s: %s", uri,
			           bench_cerr(conduit_ctx_error(ctx), r));
			goto out;
		}
		if (flow_send1(fl[i], b) < 0 || flow_recv1(fl[i], b) < 0)
			goto out;
		if (i == 0) {
			conduit_close(fl[0]);
			conduit_flow_free(fl[0]);
			fl[0] = NULL;
		}
	}
	*client = (double)(heap_used() - h0) / (double)n;
	if (read_full(rep[0], &sper, sizeof(sper), IO_MS) < 0)
		goto out;
	if (sper < 0) {
		scale_fail("the tls server failed");
		goto out;
	}
	*server = sper;
	rc = 0;
out:
	close(ctl[1]); /* the child frees its flows and ends */
	close(rep[0]);
	if (reap(pid, 2 * IO_MS) < 0 && rc == 0)
		rc = scale_fail("the tls server failed");
	for (size_t i = 0; fl != NULL && i <= n; i++)
		conduit_flow_free(fl[i]);
	free(fl);
	conduit_ctx_free(ctx);
	unlink(a.path);
	return rc;
}
#endif

int idle_section(const struct bench_settings *s)
{
#ifndef HAVE_MALLINFO2
	(void)s;
	fprintf(stderr, "conduit-bench: idle-flow memory needs glibc's "
	                "mallinfo2 (glibc 2.33 or later); not measured\n");
	return 0;
#else
	unsigned reps = s->repeats < 3 ? s->repeats : 3;
	if (reps == 0)
		reps = 1;
#if defined(__SANITIZE_ADDRESS__)
	fprintf(stderr, "conduit-bench: built with AddressSanitizer, whose "
	                "heap mallinfo2 does not see: heap figures read 0\n");
#endif
	static const char *const fig[2] = {"idle_heap_connecting",
	                                   "idle_heap_accepted"};
	static const char *const label[2] = {
	    "idle flow heap, connecting end (bytes)",
	    "idle flow heap, accepted end (bytes)"};
#ifdef CONDUIT_HAVE_TLS
	/* Raw unix runs, kept as the baseline of the TLS figures. */
	double raw_unix[2][BENCH_MAX_REPEATS] = {{0}};
#endif
	for (int t = TR_UNIX; t <= TR_TCP; t++) {
		for (int side = 0; side < 2; side++) {
			struct bench_figure f = {
			    .transport = scale_tr_name[t],
			    .figure = fig[side],
			    .label = label[side],
			    .unit = "bytes",
			    .baseline = "raw socket",
			    .param_name = "pairs",
			    .param = IDLE_PAIRS,
			    .higher_better = false,
			    .decimals = 0,
			};
			for (unsigned r = 0; r < reps; r++) {
				/* Alternate which variant runs first. */
				for (int k = 0; k < 2; k++) {
					enum api api =
					    (enum api)((k + (int)r) % 2);
					double v = 0;
					if (idle_run(api, (enum tr)t,
					             (enum side)side,
					             IDLE_PAIRS, &v) < 0)
						return scale_fail(
						    "idle %s flows failed",
						    scale_tr_name[t]);
					if (api == API_RAW)
						f.base[r] = v;
					else
						f.conduit[r] = v;
				}
#ifdef CONDUIT_HAVE_TLS
				if (t == TR_UNIX)
					raw_unix[side][r] = f.base[r];
#endif
			}
			f.n = reps;
			bench_emit(&f);
		}
	}
#ifdef CONDUIT_HAVE_TLS
	{
		struct bench_figure f[2];
		for (int side = 0; side < 2; side++)
			f[side] = (struct bench_figure){
			    .transport = "tls+unix",
			    .figure = fig[side],
			    .label = label[side],
			    .unit = "bytes",
			    .baseline = "raw unix socket (no TLS)",
			    .param_name = "pairs",
			    .param = TLS_IDLE_PAIRS,
			    .higher_better = false,
			    .decimals = 0,
			};
		for (unsigned r = 0; r < reps; r++) {
			double c = 0, sv = 0;
			if (tls_idle_run(TLS_IDLE_PAIRS, &c, &sv) < 0)
				return scale_fail("idle tls+unix flows failed");
			f[0].conduit[r] = c;
			f[1].conduit[r] = sv;
			f[0].base[r] = raw_unix[0][r];
			f[1].base[r] = raw_unix[1][r];
		}
		for (int side = 0; side < 2; side++) {
			f[side].n = reps;
			bench_emit(&f[side]);
		}
	}
#endif
	return 0;
#endif
}

/* ------------------------------------------------------------------ */
