/*
 * echo.c - conduit-echo, the example program of the quick start.
 *
 * For each transport (a Unix socket in a private directory, and TCP on
 * 127.0.0.1 with a port the system picks) it listens, connects to the
 * listener through the same API, and bounces a few MiB off an echo server,
 * all in one conduit_poll() loop: the client writes, the server echoes,
 * the client checks every byte.  Usage: conduit-echo [MiB] [URI...]
 */
#include <conduit/conduit.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 65536

static uint8_t byte_at(uint64_t i)
{
	return (uint8_t)((i * 2654435761u) >> 13);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct pump {
	uint8_t buf[CHUNK];
	size_t have, off; /* echo server: bytes held, bytes sent of them */
};

static int fail(const char *what, const char *msg)
{
	fprintf(stderr, "conduit-echo: %s: %s\n", what, msg);
	return 1;
}

static int echo_once(conduit_ctx *ctx, const char *uri, uint64_t total)
{
	conduit_listener *l = NULL;
	conduit_flow *client = NULL, *server = NULL;
	struct pump *p = calloc(1, sizeof(*p));
	uint8_t *out = malloc(CHUNK), *in = malloc(CHUNK);
	int rc = 1;
	if (p == NULL || out == NULL || in == NULL) {
		fail(uri, "out of memory");
		goto done;
	}
	if (conduit_listen(&l, ctx, uri) != CONDUIT_OK) {
		fail(uri, conduit_ctx_error(ctx));
		goto done;
	}
	const char *where = conduit_listener_uri(l);
	if (conduit_connect(&client, ctx, where) != CONDUIT_OK) {
		fail(where, conduit_ctx_error(ctx));
		goto done;
	}

	uint64_t sent = 0, got = 0;
	bool shut = false;
	double t0 = now_s();
	while (got < total) {
		struct conduit_pollitem it[3] = {
		    {.flow = client,
		     .events =
		         CONDUIT_POLLIN | (sent < total ? CONDUIT_POLLOUT : 0)},
		    {.listener = l, .events = server ? 0 : CONDUIT_POLLIN},
		    {.flow = server,
		     .events = server ? CONDUIT_POLLIN | CONDUIT_POLLOUT : 0},
		};
		size_t n = server ? 3 : 2, ready = 0;
		if (conduit_poll(ctx, it, n, 5000, &ready) != CONDUIT_OK ||
		    ready == 0) {
			fail(where, ready == 0 ? "stalled for 5 s"
			                       : conduit_ctx_error(ctx));
			goto done;
		}
		if (server == NULL && (it[1].revents & CONDUIT_POLLIN)) {
			int r = conduit_accept(&server, l);
			if (r != CONDUIT_OK && r != CONDUIT_WANT_READ) {
				fail(where, conduit_listener_error(l));
				goto done;
			}
		}
		/* Client: write the next piece of the stream. */
		if (sent < total) {
			size_t len = total - sent < CHUNK
			                 ? (size_t)(total - sent)
			                 : CHUNK;
			for (size_t i = 0; i < len; i++)
				out[i] = byte_at(sent + i);
			size_t w = 0;
			int r = conduit_write(client, out, len, &w);
			if (r != CONDUIT_OK && r != CONDUIT_WANT_READ &&
			    r != CONDUIT_WANT_WRITE) {
				fail(where, conduit_flow_error(client));
				goto done;
			}
			sent += w;
		}
		if (sent == total && !shut) {
			conduit_shutdown(client, CONDUIT_SHUT_WR);
			shut = true;
		}
		/* Server: read what it can, echo what it holds. */
		if (server != NULL) {
			if (p->have == 0) {
				int r = conduit_read(server, p->buf, CHUNK,
				                     &p->have);
				if (r == CONDUIT_EOF)
					conduit_shutdown(server,
					                 CONDUIT_SHUT_WR);
				else if (r != CONDUIT_OK &&
				         r != CONDUIT_WANT_READ &&
				         r != CONDUIT_WANT_WRITE) {
					fail(where, conduit_flow_error(server));
					goto done;
				}
				p->off = 0;
			}
			if (p->have > p->off) {
				size_t w = 0;
				int r = conduit_write(server, p->buf + p->off,
				                      p->have - p->off, &w);
				if (r != CONDUIT_OK && r != CONDUIT_WANT_READ &&
				    r != CONDUIT_WANT_WRITE) {
					fail(where, conduit_flow_error(server));
					goto done;
				}
				p->off += w;
				if (p->off == p->have)
					p->have = p->off = 0;
			}
		}
		/* Client: read the echo and check every byte. */
		size_t r_n = 0;
		int r = conduit_read(client, in, CHUNK, &r_n);
		if (r == CONDUIT_OK) {
			for (size_t i = 0; i < r_n; i++)
				if (in[i] != byte_at(got + i)) {
					fprintf(stderr,
					        "conduit-echo: %s: byte %llu "
					        "differs\n",
					        where,
					        (unsigned long long)(got + i));
					goto done;
				}
			got += r_n;
		} else if (r != CONDUIT_WANT_READ && r != CONDUIT_WANT_WRITE) {
			fail(where, r == CONDUIT_EOF
			                ? "early end of stream"
			                : conduit_flow_error(client));
			goto done;
		}
	}
	double dt = now_s() - t0;
	printf("  %-44s %5.1f MiB echoed, verified, %7.1f MiB/s\n", where,
	       (double)total / 1048576.0, (double)total / 1048576.0 / dt);
	rc = 0;
done:
	if (client != NULL)
		conduit_close(client);
	if (server != NULL)
		conduit_close(server);
	conduit_flow_free(client);
	conduit_flow_free(server);
	conduit_listener_free(l);
	free(p);
	free(out);
	free(in);
	return rc;
}

int main(int argc, char **argv)
{
	uint64_t mib = argc > 1 ? strtoull(argv[1], NULL, 10) : 16;
	if (mib == 0 || mib > 4096) {
		fprintf(stderr, "usage: conduit-echo [MiB 1-4096] [URI...]\n");
		return 2;
	}
	char dir[] = "/tmp/conduit-echo-XXXXXX";
	if (mkdtemp(dir) == NULL) {
		perror("conduit-echo: mkdtemp");
		return 1;
	}
	char unix_uri[128];
	snprintf(unix_uri, sizeof(unix_uri), "unix://%s/echo.sock", dir);
	const char *defaults[] = {unix_uri, "tcp://127.0.0.1:0",
	                          "tcp://[::1]:0"};
	const char **uris = argc > 2 ? (const char **)argv + 2 : defaults;
	size_t n = argc > 2 ? (size_t)(argc - 2) : 3;

	conduit_ctx *ctx = NULL;
	if (conduit_ctx_new(&ctx) != CONDUIT_OK) {
		fprintf(stderr, "conduit-echo: out of memory\n");
		return 1;
	}
	printf(
	    "conduit-echo: listen, connect and echo through the conduit API\n");
	int bad = 0;
	for (size_t i = 0; i < n; i++)
		bad += echo_once(ctx, uris[i], mib << 20);
	conduit_ctx_free(ctx);
	rmdir(dir);
	printf("%s\n", bad ? "FAILED" : "all echoes verified");
	return bad ? 1 : 0;
}
