/*
 * vchan_plain.c - a vchan peer that knows nothing of conduit: it uses
 * libxenvchan's API alone, as Xen's own tools and other libxenvchan
 * programs do, so test_vchan can check that conduit talks to them.
 *
 *   vchan_plain server|client DOMID XS-PATH echo
 *       echo what arrives until the peer closes, then close
 *   vchan_plain server|client DOMID XS-PATH send BYTES
 *       send BYTES of a pattern, check that the same bytes come back,
 *       then close (the peer sees the end of the stream)
 *
 * DOMID is the peer's domain.  A client waits up to 10 s for the ring.
 * Exit status 0 on success; a message on stderr otherwise.
 */
#include <errno.h>
#include <libxenvchan.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static unsigned char pattern(uint64_t at)
{
	return (unsigned char)(at * 131u + (at >> 8) * 7u + 3u);
}

static int echo(struct libxenvchan *c)
{
	static char buf[65536];
	c->blocking = 1;
	for (;;) {
		int n = libxenvchan_read(c, buf, sizeof(buf));
		if (n < 0)
			return 0; /* closed: the end of the stream */
		if (n > 0 && libxenvchan_write(c, buf, (size_t)n) != n) {
			fprintf(stderr, "vchan_plain: the peer closed while "
			                "its echo was being written\n");
			return 1;
		}
	}
}

static int send_check(struct libxenvchan *c, uint64_t total)
{
	static unsigned char out[16384], in[65536];
	uint64_t put = 0, got = 0, end = now_ms() + 60000;
	c->blocking = 0;
	while (got < total) {
		if (now_ms() > end) {
			fprintf(stderr, "vchan_plain: out of time\n");
			return 1;
		}
		int w = 0;
		if (put < total) {
			size_t k = total - put < sizeof(out)
			               ? (size_t)(total - put)
			               : sizeof(out);
			for (size_t i = 0; i < k; i++)
				out[i] = pattern(put + i);
			w = libxenvchan_write(c, out, k);
			if (w < 0) {
				fprintf(stderr, "vchan_plain: write failed\n");
				return 1;
			}
			put += (uint64_t)w;
		}
		int r = libxenvchan_read(c, in, sizeof(in));
		if (r < 0) {
			fprintf(stderr,
			        "vchan_plain: the peer closed after "
			        "%llu bytes\n",
			        (unsigned long long)got);
			return 1;
		}
		for (int i = 0; i < r; i++)
			if (in[i] != pattern(got + (uint64_t)i)) {
				fprintf(
				    stderr, "vchan_plain: wrong byte at %llu\n",
				    (unsigned long long)(got + (uint64_t)i));
				return 1;
			}
		got += (uint64_t)r;
		if (w == 0 && r == 0) {
			if (!libxenvchan_is_open(c)) {
				fprintf(stderr,
				        "vchan_plain: the peer closed "
				        "after %llu bytes\n",
				        (unsigned long long)got);
				return 1;
			}
			libxenvchan_wait(c);
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 5 || (strcmp(argv[1], "server") != 0 &&
	                 strcmp(argv[1], "client") != 0)) {
		fprintf(stderr, "usage: vchan_plain server|client DOMID "
		                "XS-PATH echo|send BYTES\n");
		return 2;
	}
	int dom = atoi(argv[2]);
	const char *path = argv[3];
	struct libxenvchan *c = NULL;
	if (strcmp(argv[1], "server") == 0) {
		c = libxenvchan_server_init(NULL, dom, path, 0, 0);
		/* Wait for the client, as a blocking server does. */
		while (c != NULL && libxenvchan_is_open(c) == 2)
			libxenvchan_wait(c);
	} else {
		uint64_t end = now_ms() + 10000;
		while ((c = libxenvchan_client_init(NULL, dom, path)) == NULL &&
		       now_ms() < end) {
			struct timespec ts = {0, 5000000};
			nanosleep(&ts, NULL);
		}
	}
	if (c == NULL) {
		fprintf(stderr, "vchan_plain: no vchan at %s: %s\n", path,
		        strerror(errno));
		return 1;
	}
	int rc = strcmp(argv[4], "echo") == 0 ? echo(c)
	         : argc > 5 && strcmp(argv[4], "send") == 0
	             ? send_check(c, strtoull(argv[5], NULL, 10))
	             : 2;
	libxenvchan_close(c);
	return rc;
}
