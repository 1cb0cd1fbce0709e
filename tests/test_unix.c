/*
 * test_unix.c - the Unix-domain socket backend against the real kernel:
 * bulk transfers between two processes with every byte checked, half-close,
 * gather writes, the exact error for each way a path can be wrong, socket
 * file permissions seen by an unprivileged process, peer credentials,
 * abstract names checked against socat (which names them independently),
 * SIGPIPE safety, a full listen queue, accept back-off when descriptors run
 * out, and close-on-exec descriptors.
 *
 * Forked peers never call ck_assert: they report through their exit status
 * only (0 is success, other values name the step that failed), and the test
 * process checks that status.
 */
#include "flowkit.h"
#include "harness.h"

#include <conduit/conduit.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define BIG (64 * MiB)

static void nap_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* A temporary directory and a socket URI inside it. */
static void sock_uri(char *uri, size_t len, const char *dir, const char *name)
{
	int n = snprintf(uri, len, "unix://%s/%s", dir, name);
	ck_assert(n > 0 && (size_t)n < len);
}

/* An abstract name no other test run uses at the same time. */
static void abstract_name(char *buf, size_t len, const char *what)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(buf, len, "conduit-test-%s-%ld-%ld", what, (long)getpid(),
	         (long)ts.tv_nsec);
}

/* ------------------------------------------------------------------ */
/* Stream helpers: they return 0 or a step number, never assert, so    */
/* forked peers can use them too.                                      */

/* Read exactly total bytes of stream `seed` and then end of stream, using
 * conduit_read() and conduit_poll(). */
static int sink_poll(conduit_ctx *ctx, conduit_flow *f, uint32_t seed,
                     uint64_t total, int timeout_ms)
{
	static uint8_t in[FK_CHUNK];
	uint64_t got = 0;
	uint64_t deadline = cd_now_ms() + (uint64_t)timeout_ms;
	for (;;) {
		if (cd_now_ms() > deadline)
			return 30;
		size_t n = 0;
		int rc = conduit_read(f, in, sizeof(in), &n);
		if (rc == CONDUIT_EOF)
			return got == total ? 0 : 31;
		if (rc == CONDUIT_OK) {
			if (n > total - got ||
			    cd_pattern_check(seed, got, in, n) != n)
				return 32;
			got += n;
			continue;
		}
		if (!fk_is_want(rc))
			return 33;
		struct conduit_pollitem it = {.flow = f,
		                              .events = CONDUIT_POLLIN};
		size_t nready = 0;
		if (conduit_poll(ctx, &it, 1, 1000, &nready) != CONDUIT_OK)
			return 34;
	}
}

/* Write total bytes of stream `seed` with conduit_write() and
 * conduit_poll(), then shut down the write side. */
static int source_poll(conduit_ctx *ctx, conduit_flow *f, uint32_t seed,
                       uint64_t total, int timeout_ms)
{
	static uint8_t out[FK_CHUNK];
	uint64_t sent = 0;
	size_t outlen = 0, outoff = 0;
	uint64_t deadline = cd_now_ms() + (uint64_t)timeout_ms;
	while (sent < total) {
		if (cd_now_ms() > deadline)
			return 40;
		if (outoff == outlen) {
			uint64_t left = total - sent;
			outlen = left < FK_CHUNK ? (size_t)left : FK_CHUNK;
			cd_pattern(seed, sent, out, outlen);
			outoff = 0;
		}
		size_t n = 0;
		int rc = conduit_write(f, out + outoff, outlen - outoff, &n);
		if (rc == CONDUIT_OK) {
			outoff += n;
			sent += n;
			continue;
		}
		if (!fk_is_want(rc))
			return 41;
		struct conduit_pollitem it = {.flow = f,
		                              .events = CONDUIT_POLLOUT};
		size_t nready = 0;
		if (conduit_poll(ctx, &it, 1, 1000, &nready) != CONDUIT_OK)
			return 42;
	}
	return conduit_shutdown(f, CONDUIT_SHUT_WR) == CONDUIT_OK ? 0 : 43;
}

/* Exchange one byte each way over a fresh connection to l. */
static void check_works(conduit_ctx *ctx, conduit_listener *l)
{
	conduit_flow *c = NULL, *s = NULL;
	fk_pair(ctx, l, NULL, &c, &s);
	fk_exchange(c, s);
	conduit_flow_free(c);
	conduit_flow_free(s);
}

/* ------------------------------------------------------------------ */
/* Bulk transfers                                                      */

/* The test process drives a non-blocking client with conduit_poll(); the
 * peer echoes with the blocking conveniences. */
START_TEST(echo_64mib_nonblocking_client)
{
	char dir[256], uri[512];
	cd_tmpdir(dir, sizeof(dir));
	sock_uri(uri, sizeof(uri), dir, "echo.sock");
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = NULL;
	ck_status(conduit_listen(&l, ctx, uri), CONDUIT_OK);

	pid_t pid = fk_spawn_echo_server(l, cd_scaled(50000), cd_scaled(50000));
	fk_echo_client(ctx, uri, 11, BIG, cd_scaled(50000));
	ck_assert_int_eq(cd_wait_peer(pid, cd_scaled(10000)), 0);
	conduit_listener_free(l);
	conduit_ctx_free(ctx);
	cd_rmtree(dir);
}
END_TEST

/* The test process uses only the blocking conveniences, one direction at a
 * time: 64 MiB to the peer, which checks it, then 64 MiB back.  The peer
 * uses the non-blocking calls. */
START_TEST(stream_64mib_blocking_each_way)
{
	char dir[256], uri[512];
	cd_tmpdir(dir, sizeof(dir));
	sock_uri(uri, sizeof(uri), dir, "stream.sock");
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = NULL;
	ck_status(conduit_listen(&l, ctx, uri), CONDUIT_OK);

	pid_t pid = cd_fork_peer();
	if (pid == 0) {
		conduit_flow *f = NULL;
		if (conduit_accept_wait(&f, l, cd_scaled(20000)) != CONDUIT_OK)
			_exit(60);
		int r = sink_poll(ctx, f, 21, BIG, cd_scaled(50000));
		if (r == 0)
			r = source_poll(ctx, f, 22, BIG, cd_scaled(50000));
		if (r == 0 && conduit_close(f) != CONDUIT_OK)
			r = 61;
		conduit_flow_free(f);
		_exit(r);
	}

	conduit_flow *f = NULL;
	ck_status(conduit_connect_wait(&f, ctx, uri, cd_scaled(5000)),
	          CONDUIT_OK);
	uint8_t *buf = malloc(4 * MiB);
	ck_assert_ptr_nonnull(buf);
	for (uint64_t off = 0; off < BIG; off += 4 * MiB) {
		cd_pattern(21, off, buf, 4 * MiB);
		size_t n = 0;
		ck_status(
		    conduit_write_all(f, buf, 4 * MiB, &n, cd_scaled(30000)),
		    CONDUIT_OK);
		ck_assert_uint_eq(n, 4 * MiB);
	}
	ck_status(conduit_shutdown(f, CONDUIT_SHUT_WR), CONDUIT_OK);
	uint64_t got = 0;
	uint64_t end = cd_now_ms() + (uint64_t)cd_scaled(60000);
	for (;;) {
		ck_assert_msg(cd_now_ms() < end,
		              "no end of stream after %llu bytes",
		              (unsigned long long)got);
		size_t n = 0;
		int rc =
		    conduit_read_wait(f, buf, 4 * MiB, &n, cd_scaled(30000));
		if (rc == CONDUIT_EOF)
			break;
		ck_assert_msg(rc == CONDUIT_OK,
		              "read after %llu bytes: %s (%s)",
		              (unsigned long long)got, conduit_status_name(rc),
		              conduit_flow_error(f));
		ck_assert_msg(n <= BIG - got, "more bytes than were sent");
		size_t bad = cd_pattern_check(22, got, buf, n);
		ck_assert_msg(bad == n, "wrong byte at offset %llu",
		              (unsigned long long)(got + bad));
		got += n;
	}
	ck_assert_uint_eq(got, BIG);
	free(buf);
	conduit_flow_free(f);
	ck_assert_int_eq(cd_wait_peer(pid, cd_scaled(10000)), 0);
	conduit_listener_free(l);
	conduit_ctx_free(ctx);
	cd_rmtree(dir);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Half-close                                                          */

START_TEST(half_close)
{
	static const char request[] = "request, then end of stream";
	static const char reply[] = "reply written after the end of stream";
	char dir[256], uri[512];
	cd_tmpdir(dir, sizeof(dir));
	sock_uri(uri, sizeof(uri), dir, "half.sock");
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = NULL;
	ck_status(conduit_listen(&l, ctx, uri), CONDUIT_OK);

	pid_t pid = cd_fork_peer();
	if (pid == 0) {
		/* Server: read to end of stream, then still answer. */
		conduit_flow *f = NULL;
		if (conduit_accept_wait(&f, l, cd_scaled(5000)) != CONDUIT_OK)
			_exit(70);
		char got[128];
		size_t have = 0;
		uint64_t end = cd_now_ms() + (uint64_t)cd_scaled(10000);
		for (;;) {
			if (cd_now_ms() >= end)
				_exit(75);
			size_t n = 0;
			int rc =
			    conduit_read_wait(f, got + have, sizeof(got) - have,
			                      &n, cd_scaled(5000));
			if (rc == CONDUIT_EOF)
				break;
			if (rc != CONDUIT_OK || have + n >= sizeof(got))
				_exit(71);
			have += n;
		}
		if (have != sizeof(request) || memcmp(got, request, have) != 0)
			_exit(72);
		if (conduit_write_all(f, reply, sizeof(reply), NULL,
		                      cd_scaled(5000)) != CONDUIT_OK)
			_exit(73);
		if (conduit_close_wait(f, cd_scaled(5000)) != CONDUIT_OK)
			_exit(74);
		conduit_flow_free(f);
		_exit(0);
	}

	conduit_flow *f = NULL;
	ck_status(conduit_connect_wait(&f, ctx, uri, cd_scaled(5000)),
	          CONDUIT_OK);
	ck_status(conduit_write_all(f, request, sizeof(request), NULL,
	                            cd_scaled(5000)),
	          CONDUIT_OK);
	ck_status(conduit_shutdown(f, CONDUIT_SHUT_WR), CONDUIT_OK);
	size_t n = 0;
	ck_status(conduit_write(f, "x", 1, &n), CONDUIT_ERR_STATE);
	char got[128];
	size_t have = 0;
	int rc = CONDUIT_OK;
	uint64_t end = cd_now_ms() + (uint64_t)cd_scaled(10000);
	while (cd_now_ms() < end) {
		rc = conduit_read_wait(f, got + have, sizeof(got) - have, &n,
		                       cd_scaled(5000));
		if (rc != CONDUIT_OK)
			break;
		have += n;
		ck_assert_uint_lt(have, sizeof(got));
	}
	ck_status(rc, CONDUIT_EOF);
	ck_assert_uint_eq(have, sizeof(reply));
	ck_assert_mem_eq(got, reply, sizeof(reply));
	/* End of stream stays end of stream. */
	ck_status(conduit_read(f, got, sizeof(got), &n), CONDUIT_EOF);
	ck_status(conduit_close(f), CONDUIT_OK);
	conduit_flow_free(f);
	ck_assert_int_eq(cd_wait_peer(pid, cd_scaled(10000)), 0);
	conduit_listener_free(l);
	conduit_ctx_free(ctx);
	cd_rmtree(dir);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Gather writes                                                       */

/* Drain what the server side has, checking it against the stream. */
static void drain(conduit_flow *s, uint32_t seed, uint64_t *got, bool *eof)
{
	static uint8_t in[FK_CHUNK];
	for (int i = 0; i < 100000; i++) {
		size_t n = 0;
		int rc = conduit_read(s, in, sizeof(in), &n);
		if (rc == CONDUIT_EOF) {
			*eof = true;
			return;
		}
		if (fk_is_want(rc))
			return;
		ck_status(rc, CONDUIT_OK);
		size_t bad = cd_pattern_check(seed, *got, in, n);
		ck_assert_msg(bad == n, "byte %llu out of order or wrong",
		              (unsigned long long)(*got + bad));
		*got += n;
	}
}

/*
 * Write the stream through conduit_writev() from separately allocated
 * buffers of awkward sizes (empty ones among them), more than fit in the
 * socket at once, so short writes happen and must be resumed mid-buffer.
 * A second round uses more buffers than one sendmsg() takes.
 */
START_TEST(writev_gather_in_order)
{
	static const size_t sizes[] = {1,     0,      13, 4096,   0,
	                               65536, 100000, 3,  250000, 7};
	enum {
		NSEG = sizeof(sizes) / sizeof(sizes[0]),
		ROUNDS = 8,
		MANY = 150
	};
	const uint32_t seed = 31;
	char dir[256], uri[512];
	cd_tmpdir(dir, sizeof(dir));
	sock_uri(uri, sizeof(uri), dir, "gather.sock");
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = NULL;
	ck_status(conduit_listen(&l, ctx, uri), CONDUIT_OK);
	conduit_flow *c = NULL, *s = NULL;
	fk_pair(ctx, l, NULL, &c, &s);

	uint64_t off = 0, got = 0;
	unsigned short_writes = 0, calls = 0;
	bool eof = false;
	for (int round = 0; round < ROUNDS + 1; round++) {
		/* The last round: MANY small buffers. */
		size_t nseg = round < ROUNDS ? NSEG : MANY;
		uint8_t *bufs[MANY];
		struct conduit_iov iov[MANY];
		uint64_t total = 0;
		for (size_t k = 0; k < nseg; k++) {
			size_t len = round < ROUNDS ? sizes[k] : 1 + k % 5;
			bufs[k] = malloc(len ? len : 1);
			ck_assert_ptr_nonnull(bufs[k]);
			cd_pattern(seed, off + total, bufs[k], len);
			iov[k].base = bufs[k];
			iov[k].len = len;
			total += len;
		}
		struct conduit_iov *cur = iov;
		size_t cnt = nseg;
		uint64_t left = total;
		uint64_t deadline = cd_now_ms() + (uint64_t)cd_scaled(5000);
		while (left > 0) {
			ck_assert_msg(cd_now_ms() < deadline,
			              "gather write made no progress");
			size_t n = 0;
			int rc = conduit_writev(c, cur, cnt, &n);
			calls++;
			if (fk_is_want(rc)) {
				drain(s, seed, &got, &eof);
				continue;
			}
			ck_status(rc, CONDUIT_OK);
			ck_assert_uint_le(n, left);
			if (n < left)
				short_writes++;
			left -= n;
			/* Skip what went, resume inside a partly sent
			 * buffer. */
			while (cnt > 0 && n >= cur->len) {
				n -= cur->len;
				cur++;
				cnt--;
			}
			if (cnt > 0) {
				cur->base = (const uint8_t *)cur->base + n;
				cur->len -= n;
			}
		}
		off += total;
		for (size_t k = 0; k < nseg; k++)
			free(bufs[k]);
	}
	/* Nothing but empty buffers is a successful write of nothing. */
	struct conduit_iov empty[2] = {{"", 0}, {NULL, 0}};
	size_t n = 99;
	ck_status(conduit_writev(c, empty, 2, &n), CONDUIT_OK);
	ck_assert_uint_eq(n, 0);

	ck_status(conduit_shutdown(c, CONDUIT_SHUT_WR), CONDUIT_OK);
	for (int i = 0; i < 100000 && !eof; i++) {
		drain(s, seed, &got, &eof);
		if (!eof) {
			struct conduit_pollitem it = {.flow = s,
			                              .events = CONDUIT_POLLIN};
			size_t nready;
			ck_status(conduit_poll(ctx, &it, 1, 1000, &nready),
			          CONDUIT_OK);
		}
	}
	ck_assert(eof);
	ck_assert_uint_eq(got, off);
	ck_assert_msg(short_writes > 0,
	              "no short write in %u calls: the test did not cover them",
	              calls);
	struct conduit_flow_stats st;
	conduit_flow_stats(c, &st);
	ck_assert_uint_eq(st.bytes_written, off);

	fk_free_all(c, s, l, ctx);
	cd_rmtree(dir);
}
END_TEST

/*
 * More buffers than one sendmsg() takes, the first 70 of them empty: the
 * empty ones are skipped and the bytes behind them go out, rather than a
 * write of nothing that a caller would retry for ever.
 */
START_TEST(writev_leading_empty_buffers)
{
	enum { NIOV = 100, NEMPTY = 70 };
	const uint32_t seed = 47;
	char dir[256], uri[512];
	cd_tmpdir(dir, sizeof(dir));
	sock_uri(uri, sizeof(uri), dir, "empties.sock");
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = fk_listen(ctx, uri);
	conduit_flow *c = NULL, *s = NULL;
	fk_pair(ctx, l, NULL, &c, &s);

	/* Buffers 70..99 hold 1..30 bytes of the stream, in order. */
	static uint8_t data[NIOV * 32];
	struct conduit_iov iov[NIOV];
	size_t total = 0;
	for (size_t k = 0; k < NIOV; k++) {
		size_t len = k < NEMPTY ? 0 : k - NEMPTY + 1;
		cd_pattern(seed, total, data + total, len);
		/* Empty buffers may have a NULL base: half of them do. */
		iov[k].base = len == 0 && k % 2 ? NULL : data + total;
		iov[k].len = len;
		total += len;
	}
	size_t n = 0;
	ck_status(conduit_writev(c, iov, NIOV, &n), CONDUIT_OK);
	/* An idle socket takes these few hundred bytes whole. */
	ck_assert_uint_eq(n, total);

	ck_status(conduit_shutdown(c, CONDUIT_SHUT_WR), CONDUIT_OK);
	uint8_t in[sizeof(data)];
	size_t got = 0;
	uint64_t end = cd_now_ms() + (uint64_t)cd_scaled(10000);
	for (;;) {
		ck_assert_msg(cd_now_ms() < end,
		              "no end of stream after %zu bytes", got);
		size_t m = 0;
		int rc = conduit_read_wait(s, in + got, sizeof(in) - got, &m,
		                           cd_scaled(2000));
		if (rc == CONDUIT_EOF)
			break;
		ck_status(rc, CONDUIT_OK);
		got += m;
	}
	ck_assert_uint_eq(got, total);
	ck_assert_uint_eq(cd_pattern_check(seed, 0, in, got), got);
	fk_free_all(c, s, l, ctx);
	cd_rmtree(dir);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Errors                                                              */

START_TEST(connect_missing_socket_file)
{
	char dir[256], uri[512];
	cd_tmpdir(dir, sizeof(dir));
	sock_uri(uri, sizeof(uri), dir, "nobody-here.sock");
	conduit_ctx *ctx = fk_new_ctx();
	conduit_flow *f = (conduit_flow *)&f; /* must be reset to NULL */
	ck_status(conduit_connect(&f, ctx, uri), CONDUIT_ERR_NOT_FOUND);
	ck_assert_ptr_null(f);
	const char *msg = conduit_ctx_error(ctx);
	ck_assert_msg(strstr(msg, uri) != NULL, "message '%s' does not name %s",
	              msg, uri);
	/* The blocking form reports the same. */
	ck_status(conduit_connect_wait(&f, ctx, uri, cd_scaled(1000)),
	          CONDUIT_ERR_NOT_FOUND);
	ck_assert_ptr_null(f);
	ck_assert_ptr_nonnull(strstr(conduit_ctx_error(ctx), uri));
	conduit_ctx_free(ctx);
	cd_rmtree(dir);
}
END_TEST

/* A socket file left behind by a process that is gone. */
static void make_stale_socket(const char *path)
{
	struct sockaddr_un un;
	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	ck_assert_uint_lt(strlen(path), sizeof(un.sun_path));
	memcpy(un.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&un, sizeof(un)), 0);
	close(fd);
	struct stat st;
	ck_assert_int_eq(lstat(path, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
}

START_TEST(connect_refused_on_stale_socket)
{
	char dir[256], path[512], uri[600];
	cd_tmpdir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/stale.sock", dir);
	snprintf(uri, sizeof(uri), "unix://%s", path);
	make_stale_socket(path);
	conduit_ctx *ctx = fk_new_ctx();
	conduit_flow *f = NULL;
	ck_status(conduit_connect(&f, ctx, uri), CONDUIT_ERR_REFUSED);
	ck_assert_ptr_null(f);
	const char *msg = conduit_ctx_error(ctx);
	ck_assert_msg(strstr(msg, uri) != NULL && strstr(msg, "refused"),
	              "message '%s' should name %s and say refused", msg, uri);
	conduit_ctx_free(ctx);
	cd_rmtree(dir);
}
END_TEST

/* Entries in a directory, to prove nothing was created. */
static int count_entries(const char *dir)
{
	int n = 0;
	DIR *d = opendir(dir);
	ck_assert_ptr_nonnull(d);
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

START_TEST(path_too_long)
{
	char dir[256], uri[1024], name[200];
	cd_tmpdir(dir, sizeof(dir));
	memset(name, 'p', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	sock_uri(uri, sizeof(uri), dir, name);
	conduit_ctx *ctx = fk_new_ctx();
	conduit_flow *f = NULL;
	ck_status(conduit_connect(&f, ctx, uri), CONDUIT_ERR_PATH_TOO_LONG);
	ck_assert_ptr_null(f);
	ck_assert_str_ne(conduit_ctx_error(ctx), "");
	conduit_listener *l = NULL;
	ck_status(conduit_listen(&l, ctx, uri), CONDUIT_ERR_PATH_TOO_LONG);
	ck_assert_ptr_null(l);
	ck_assert_str_ne(conduit_ctx_error(ctx), "");
	/* Just past the limit (108 bytes with the NUL) also fails... */
	char edge[128];
	memset(edge, 'e', 108);
	edge[0] = '/';
	edge[108] = '\0';
	snprintf(uri, sizeof(uri), "unix://%s", edge);
	ck_status(conduit_listen(&l, ctx, uri), CONDUIT_ERR_PATH_TOO_LONG);
	/* ...and an abstract name too long for sun_path. */
	char abs[300];
	memset(name, 'a', sizeof(name) - 1);
	snprintf(abs, sizeof(abs), "unix-abstract://%s", name);
	ck_status(conduit_listen(&l, ctx, abs), CONDUIT_ERR_PATH_TOO_LONG);
	ck_status(conduit_connect(&f, ctx, abs), CONDUIT_ERR_PATH_TOO_LONG);
	/* Nothing was created, not even a temporary name. */
	ck_assert_int_eq(count_entries(dir), 0);
	conduit_ctx_free(ctx);
	cd_rmtree(dir);
}
END_TEST

/*
 * A path so deep that the private directory beside it (where a socket is
 * bound and given its mode before it appears) would not fit in sun_path:
 * the listener binds in place instead, and must still apply the mode and
 * clean up.
 */
START_TEST(long_path_binds_in_place)
{
	char dir[256], sub[200], path[300], uri[400];
	cd_tmpdir(dir, sizeof(dir));
	size_t dl = strlen(dir);
	ck_assert_uint_lt(dl, 90);
	/* sub is 100 bytes; sub + "/s.sk" is 105, within the 107 limit. */
	memcpy(sub, dir, dl);
	sub[dl] = '/';
	memset(sub + dl + 1, 'd', 100 - dl - 1);
	sub[100] = '\0';
	ck_assert_int_eq(mkdir(sub, 0700), 0);
	snprintf(path, sizeof(path), "%s/s.sk", sub);
	snprintf(uri, sizeof(uri), "unix://%s?mode=0640", path);

	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = NULL;
	ck_status(conduit_listen(&l, ctx, uri), CONDUIT_OK);
	struct stat st;
	ck_assert_int_eq(lstat(path, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 07777, 0640);
	ck_assert_int_eq(count_entries(sub), 1);
	check_works(ctx, l);
	conduit_listener_free(l);
	ck_assert_int_eq(count_entries(sub), 0);
	conduit_ctx_free(ctx);
	cd_rmtree(dir);
}
END_TEST

START_TEST(listen_on_regular_file_leaves_it_alone)
{
	static const char content[] = "precious data, not a socket\n";
	char dir[256], path[512], uri[600];
	cd_tmpdir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/data.sock", dir);
	snprintf(uri, sizeof(uri), "unix://%s", path);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, content, sizeof(content)),
	                 (ssize_t)sizeof(content));
	close(fd);

	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = NULL;
	ck_status(conduit_listen(&l, ctx, uri), CONDUIT_ERR_NOT_SOCKET);
	ck_assert_ptr_null(l);
	const char *msg = conduit_ctx_error(ctx);
	ck_assert_msg(strstr(msg, uri) != NULL, "message '%s' does not name %s",
	              msg, uri);
	/* Also with a mode, which takes the private-directory path. */
	char moded[700];
	snprintf(moded, sizeof(moded), "%s?mode=0600", uri);
	ck_status(conduit_listen(&l, ctx, moded), CONDUIT_ERR_NOT_SOCKET);

	struct stat st;
	ck_assert_int_eq(lstat(path, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_int_eq(st.st_size, (off_t)sizeof(content));
	char back[sizeof(content) + 8];
	fd = open(path, O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(read(fd, back, sizeof(back)),
	                 (ssize_t)sizeof(content));
	close(fd);
	ck_assert_mem_eq(back, content, sizeof(content));
	ck_assert_int_eq(count_entries(dir), 1);
	conduit_ctx_free(ctx);
	cd_rmtree(dir);
}
END_TEST

START_TEST(listen_replaces_stale_socket)
{
	char dir[256], path[512], uri[600];
	cd_tmpdir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/stale.sock", dir);
	snprintf(uri, sizeof(uri), "unix://%s", path);
	make_stale_socket(path);
	struct stat before, after;
	ck_assert_int_eq(lstat(path, &before), 0);

	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = NULL;
	ck_status(conduit_listen(&l, ctx, uri), CONDUIT_OK);
	ck_assert_int_eq(lstat(path, &after), 0);
	ck_assert(S_ISSOCK(after.st_mode));
	ck_assert_msg(after.st_ino != before.st_ino,
	              "the stale socket file was not replaced");
	check_works(ctx, l);
	conduit_listener_free(l);
	ck_assert_int_eq(count_entries(dir), 0);
	conduit_ctx_free(ctx);
	cd_rmtree(dir);
}
END_TEST

START_TEST(listen_on_live_socket_is_in_use)
{
	char dir[256], path[512], uri[600];
	cd_tmpdir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/live.sock", dir);
	snprintf(uri, sizeof(uri), "unix://%s", path);
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *first = NULL, *second = NULL;
	ck_status(conduit_listen(&first, ctx, uri), CONDUIT_OK);
	struct stat before, after;
	ck_assert_int_eq(lstat(path, &before), 0);

	ck_status(conduit_listen(&second, ctx, uri), CONDUIT_ERR_ADDR_IN_USE);
	ck_assert_ptr_null(second);
	const char *msg = conduit_ctx_error(ctx);
	ck_assert_msg(strstr(msg, uri) != NULL, "message '%s' does not name %s",
	              msg, uri);
	/* The first listener's file is untouched and still serves.  Finding
	 * out that it is live may have taken a connection to it (a probe
	 * that is gone already): set aside whatever is queued. */
	ck_assert_int_eq(lstat(path, &after), 0);
	ck_assert_uint_eq(after.st_ino, before.st_ino);
	for (int i = 0; i < 10; i++) {
		conduit_flow *probe = NULL;
		int rc = conduit_accept(&probe, first);
		if (rc == CONDUIT_WANT_READ)
			break;
		ck_status(rc, CONDUIT_OK);
		conduit_flow_free(probe);
	}
	check_works(ctx, first);
	conduit_listener_free(first);
	ck_assert_int_eq(count_entries(dir), 0);
	conduit_ctx_free(ctx);
	cd_rmtree(dir);
}
END_TEST

START_TEST(listener_free_removes_its_file_only)
{
	char dir[256], path[512], uri[600];
	cd_tmpdir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/mine.sock", dir);
	snprintf(uri, sizeof(uri), "unix://%s", path);
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = NULL;
	ck_status(conduit_listen(&l, ctx, uri), CONDUIT_OK);
	ck_assert_str_eq(conduit_listener_uri(l), uri);
	struct stat st;
	ck_assert_int_eq(lstat(path, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	conduit_listener_free(l);
	errno = 0;
	ck_assert_int_eq(lstat(path, &st), -1);
	ck_assert_int_eq(errno, ENOENT);

	/* A file someone else put there since is not the listener's. */
	ck_status(conduit_listen(&l, ctx, uri), CONDUIT_OK);
	ck_assert_int_eq(unlink(path), 0);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	ck_assert_int_ge(fd, 0);
	close(fd);
	conduit_listener_free(l);
	ck_assert_int_eq(lstat(path, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	conduit_ctx_free(ctx);
	cd_rmtree(dir);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Socket file permissions                                             */

/* Forked peer: become nobody, connect, and exit 0 if the status is the
 * expected one. */
static void child_connect_as_nobody(const char *uri, int want)
{
	if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
		_exit(80);
	if (getuid() != 65534 || geteuid() != 65534 || getegid() != 65534)
		_exit(81);
	conduit_ctx *ctx = NULL;
	if (conduit_ctx_new(&ctx) != CONDUIT_OK)
		_exit(82);
	conduit_flow *f = NULL;
	int rc = conduit_connect(&f, ctx, uri);
	if (rc == CONDUIT_OK)
		rc = conduit_handshake(f);
	if (rc != want)
		_exit(rc == CONDUIT_OK ? 83 : 100 + rc);
	if (want == CONDUIT_ERR_PERMISSION &&
	    strstr(conduit_ctx_error(ctx), uri) == NULL)
		_exit(84);
	conduit_flow_free(f);
	conduit_ctx_free(ctx);
	_exit(0);
}

START_TEST(mode_option_and_permissions)
{
	char dir[256], path[512], uri[600], closed_uri[700], open_uri[700];
	cd_tmpdir(dir, sizeof(dir));
	/* Tests run as root; the unprivileged peer must be able to reach
	 * the directory, so that only the socket's mode stops it. */
	ck_assert_int_eq(chmod(dir, 0755), 0);
	ck_assert_msg(geteuid() == 0,
	              "this test needs root to drop to another user");

	snprintf(path, sizeof(path), "%s/private.sock", dir);
	snprintf(uri, sizeof(uri), "unix://%s", path);
	snprintf(closed_uri, sizeof(closed_uri), "%s?mode=0600", uri);
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = NULL;
	ck_status(conduit_listen(&l, ctx, closed_uri), CONDUIT_OK);
	struct stat st;
	ck_assert_int_eq(lstat(path, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 07777, 0600);
	pid_t pid = cd_fork_peer();
	if (pid == 0)
		child_connect_as_nobody(uri, CONDUIT_ERR_PERMISSION);
	int r = cd_wait_peer(pid, cd_scaled(5000));
	ck_assert_msg(r == 0, "unprivileged peer with mode 0600: exit %d", r);
	/* The refused attempt left nothing in the queue. */
	conduit_flow *s = NULL;
	ck_status(conduit_accept(&s, l), CONDUIT_WANT_READ);
	conduit_listener_free(l);

	snprintf(path, sizeof(path), "%s/public.sock", dir);
	snprintf(uri, sizeof(uri), "unix://%s", path);
	snprintf(open_uri, sizeof(open_uri), "%s?mode=0666", uri);
	ck_status(conduit_listen(&l, ctx, open_uri), CONDUIT_OK);
	ck_assert_int_eq(lstat(path, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0666);
	pid = cd_fork_peer();
	if (pid == 0)
		child_connect_as_nobody(uri, CONDUIT_OK);
	r = cd_wait_peer(pid, cd_scaled(5000));
	ck_assert_msg(r == 0, "unprivileged peer with mode 0666: exit %d", r);
	/* The connection it made is there, and its credentials say who. */
	ck_status(conduit_accept_wait(&s, l, cd_scaled(2000)), CONDUIT_OK);
	struct conduit_peer_cred cred;
	ck_status(conduit_flow_peer_cred(s, &cred), CONDUIT_OK);
	ck_assert_int_eq(cred.uid, 65534);
	ck_assert_int_eq(cred.gid, 65534);
	ck_assert_int_eq(cred.pid, pid);
	conduit_flow_free(s);
	conduit_listener_free(l);

	/* A mode that is not octal permissions is refused up front. */
	snprintf(open_uri, sizeof(open_uri), "%s?mode=0999", uri);
	ck_assert_int_ne(conduit_listen(&l, ctx, open_uri), CONDUIT_OK);
	ck_assert_ptr_null(l);
	ck_assert_int_eq(count_entries(dir), 0);
	conduit_ctx_free(ctx);
	cd_rmtree(dir);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Peer credentials                                                    */

START_TEST(peer_credentials_both_sides)
{
	char dir[256], uri[512];
	cd_tmpdir(dir, sizeof(dir));
	sock_uri(uri, sizeof(uri), dir, "cred.sock");
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = NULL;
	ck_status(conduit_listen(&l, ctx, uri), CONDUIT_OK);
	pid_t me = getpid();

	pid_t pid = cd_fork_peer();
	if (pid == 0) {
		conduit_flow *f = NULL;
		if (conduit_connect_wait(&f, ctx, uri, cd_scaled(5000)) !=
		    CONDUIT_OK)
			_exit(90);
		struct conduit_peer_cred cred;
		int code = 0;
		if (conduit_flow_peer_cred(f, &cred) != CONDUIT_OK)
			code = 91;
		else if (cred.pid != me)
			code = 92;
		else if (cred.uid != 0 || cred.gid != 0)
			code = 93;
		/* Stay connected until the server has looked too. */
		if (conduit_write_all(f, "c", 1, NULL, cd_scaled(5000)) !=
		    CONDUIT_OK)
			code = code ? code : 94;
		char b;
		size_t n;
		if (conduit_read_wait(f, &b, 1, &n, cd_scaled(5000)) !=
		    CONDUIT_EOF)
			code = code ? code : 95;
		conduit_flow_free(f);
		_exit(code);
	}

	conduit_flow *s = NULL;
	ck_status(conduit_accept_wait(&s, l, cd_scaled(5000)), CONDUIT_OK);
	struct conduit_peer_cred cred;
	ck_status(conduit_flow_peer_cred(s, &cred), CONDUIT_OK);
	ck_assert_int_eq(cred.pid, pid);
	ck_assert_int_eq(cred.uid, 0);
	ck_assert_int_eq(cred.gid, 0);
	char b = 0;
	size_t n = 0;
	ck_status(conduit_read_wait(s, &b, 1, &n, cd_scaled(5000)), CONDUIT_OK);
	ck_assert_int_eq(b, 'c');
	ck_status(conduit_close(s), CONDUIT_OK);
	conduit_flow_free(s);
	ck_assert_int_eq(cd_wait_peer(pid, cd_scaled(5000)), 0);
	conduit_listener_free(l);
	conduit_ctx_free(ctx);
	cd_rmtree(dir);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Abstract sockets                                                    */

START_TEST(abstract_echo)
{
	char name[128], uri[200];
	abstract_name(name, sizeof(name), "echo");
	snprintf(uri, sizeof(uri), "unix-abstract://%s", name);
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = NULL;
	ck_status(conduit_listen(&l, ctx, uri), CONDUIT_OK);
	ck_assert_str_eq(conduit_listener_uri(l), uri);
	/* A second listener on the same name is refused. */
	conduit_listener *again = NULL;
	ck_status(conduit_listen(&again, ctx, uri), CONDUIT_ERR_ADDR_IN_USE);

	pid_t pid = fk_spawn_echo_server(l, cd_scaled(20000), cd_scaled(20000));
	conduit_flow *f = NULL;
	ck_status(conduit_connect(&f, ctx, uri), CONDUIT_OK);
	int r = fk_pump_echo(ctx, f, 41, 8 * MiB, cd_scaled(20000));
	ck_assert_msg(r == 0, "abstract echo failed at step %d: %s", r,
	              conduit_flow_error(f));
	conduit_flow_free(f);
	ck_assert_int_eq(cd_wait_peer(pid, cd_scaled(5000)), 0);
	conduit_listener_free(l);

	/* Nobody listens any more: refused, not "no such file". */
	ck_status(conduit_connect(&f, ctx, uri), CONDUIT_ERR_REFUSED);
	ck_assert_ptr_nonnull(strstr(conduit_ctx_error(ctx), uri));
	conduit_ctx_free(ctx);
}
END_TEST

/* socat is a declared dependency of the tests: without it the interop
 * tests fail, loudly, rather than pass without testing anything. */
static void find_socat(char *buf, size_t len)
{
	const char *path = getenv("PATH");
	if (path == NULL || path[0] == '\0')
		path = "/usr/local/bin:/usr/bin:/bin";
	while (*path != '\0') {
		size_t n = strcspn(path, ":");
		int w = snprintf(buf, len, "%.*s/socat", (int)n,
		                 n == 0 ? "." : path);
		if (w > 0 && (size_t)w < len && access(buf, X_OK) == 0)
			return;
		path += n;
		if (*path == ':')
			path++;
	}
	ck_abort_msg("socat not found in PATH: it is a declared dependency of "
	             "the tests (Debian package 'socat'); install it");
}

/* socat listens on an abstract name; conduit connects by the same name. */
START_TEST(abstract_interop_socat_listens)
{
	char socat[512], name[128], addr[200], uri[200];
	find_socat(socat, sizeof(socat));
	abstract_name(name, sizeof(name), "socat-listen");
	snprintf(addr, sizeof(addr), "ABSTRACT-LISTEN:%s", name);
	snprintf(uri, sizeof(uri), "unix-abstract://%s", name);

	pid_t pid = cd_fork_peer();
	if (pid == 0) {
		/* PIPE echoes whatever it is given. */
		char *argv[] = {socat, "-t", "5", addr, "PIPE", NULL};
		execv(socat, argv);
		_exit(127);
	}

	conduit_ctx *ctx = fk_new_ctx();
	conduit_flow *f = NULL;
	int rc = CONDUIT_ERR_REFUSED;
	/* socat needs a moment to start listening. */
	uint64_t up_by = cd_now_ms() + (uint64_t)cd_scaled(5000);
	while (rc == CONDUIT_ERR_REFUSED && cd_now_ms() < up_by) {
		rc = conduit_connect(&f, ctx, uri);
		if (rc == CONDUIT_ERR_REFUSED)
			nap_ms(10);
	}
	ck_assert_msg(rc == CONDUIT_OK,
	              "could not connect to socat's %s: %s (%s)", addr,
	              conduit_status_name(rc), conduit_ctx_error(ctx));
	static const char msg[] = "through socat and back";
	ck_status(conduit_write_all(f, msg, sizeof(msg), NULL, cd_scaled(5000)),
	          CONDUIT_OK);
	char back[64];
	size_t have = 0;
	for (int i = 0; i < 100 && have < sizeof(msg); i++) {
		size_t n = 0;
		ck_status(conduit_read_wait(f, back + have, sizeof(back) - have,
		                            &n, cd_scaled(5000)),
		          CONDUIT_OK);
		have += n;
	}
	ck_assert_uint_eq(have, sizeof(msg));
	ck_assert_mem_eq(back, msg, sizeof(msg));
	ck_status(conduit_close(f), CONDUIT_OK);
	conduit_flow_free(f);
	int st = cd_wait_peer(pid, cd_scaled(10000));
	ck_assert_msg(st == 0, "socat exited with %d", st);
	conduit_ctx_free(ctx);
}
END_TEST

/* conduit listens; socat connects by name with its stdin and stdout on
 * pipes to this process. */
START_TEST(abstract_interop_socat_connects)
{
	char socat[512], name[128], addr[200], uri[200];
	find_socat(socat, sizeof(socat));
	abstract_name(name, sizeof(name), "socat-connect");
	snprintf(addr, sizeof(addr), "ABSTRACT-CONNECT:%s", name);
	snprintf(uri, sizeof(uri), "unix-abstract://%s", name);

	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = NULL;
	ck_status(conduit_listen(&l, ctx, uri), CONDUIT_OK);

	int to_socat[2], from_socat[2];
	ck_assert_int_eq(pipe2(to_socat, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(from_socat, O_CLOEXEC), 0);
	pid_t pid = cd_fork_peer();
	if (pid == 0) {
		if (dup2(to_socat[0], 0) < 0 || dup2(from_socat[1], 1) < 0)
			_exit(126);
		char *argv[] = {socat, "-t", "5", "-", addr, NULL};
		execv(socat, argv);
		_exit(127);
	}
	close(to_socat[0]);
	close(from_socat[1]);

	static const char ping[] = "ping from socat\n";
	static const char pong[] = "pong from conduit\n";
	ck_assert_int_eq(write(to_socat[1], ping, sizeof(ping) - 1),
	                 (ssize_t)(sizeof(ping) - 1));
	conduit_flow *s = NULL;
	int rc = conduit_accept_wait(&s, l, cd_scaled(5000));
	ck_assert_msg(rc == CONDUIT_OK,
	              "socat did not connect to %s: %s (socat exit %d)", name,
	              conduit_status_name(rc),
	              rc == CONDUIT_OK ? 0 : cd_wait_peer(pid, 0));
	char got[64];
	size_t have = 0;
	for (int i = 0; i < 100 && have < sizeof(ping) - 1; i++) {
		size_t n = 0;
		ck_status(conduit_read_wait(s, got + have, sizeof(got) - have,
		                            &n, cd_scaled(5000)),
		          CONDUIT_OK);
		have += n;
	}
	ck_assert_uint_eq(have, sizeof(ping) - 1);
	ck_assert_mem_eq(got, ping, have);
	ck_status(
	    conduit_write_all(s, pong, sizeof(pong) - 1, NULL, cd_scaled(5000)),
	    CONDUIT_OK);
	ck_status(conduit_close(s), CONDUIT_OK);
	conduit_flow_free(s);

	/* socat copies the reply to its stdout and ends: its input ends
	 * too, or it would wait out its -t 5 for more, as long as this
	 * loop's deadline (the test failed so under load). */
	close(to_socat[1]);
	have = 0;
	uint64_t deadline = cd_now_ms() + (uint64_t)cd_scaled(5000);
	for (;;) {
		ck_assert_msg(cd_now_ms() < deadline,
		              "socat's output did not end");
		struct pollfd p = {.fd = from_socat[0], .events = POLLIN};
		if (poll(&p, 1, 100) <= 0)
			continue;
		ssize_t n = read(from_socat[0], got + have, sizeof(got) - have);
		ck_assert_int_ge(n, 0);
		if (n == 0)
			break;
		have += (size_t)n;
		ck_assert_uint_lt(have, sizeof(got));
	}
	ck_assert_uint_eq(have, sizeof(pong) - 1);
	ck_assert_mem_eq(got, pong, have);
	close(from_socat[0]);
	int st = cd_wait_peer(pid, cd_scaled(10000));
	ck_assert_msg(st == 0, "socat exited with %d", st);
	conduit_listener_free(l);
	conduit_ctx_free(ctx);
}
END_TEST

/* ------------------------------------------------------------------ */
/* SIGPIPE                                                             */

START_TEST(write_after_peer_closed_no_sigpipe)
{
	char dir[256], uri[512];
	cd_tmpdir(dir, sizeof(dir));
	sock_uri(uri, sizeof(uri), dir, "pipe.sock");
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = NULL;
	ck_status(conduit_listen(&l, ctx, uri), CONDUIT_OK);
	conduit_flow *c = NULL, *s = NULL;
	fk_pair(ctx, l, NULL, &c, &s);
	conduit_flow_free(s);

	/* The harness restored SIGPIPE's default action: a raised SIGPIPE
	 * would kill this process and fail the test. */
	static uint8_t buf[16 * 1024];
	int rc = CONDUIT_OK;
	for (int i = 0; i < 1000 && rc == CONDUIT_OK; i++) {
		size_t n = 0;
		rc = conduit_write(c, buf, sizeof(buf), &n);
	}
	ck_assert_msg(rc == CONDUIT_ERR_CLOSED || rc == CONDUIT_ERR_RESET,
	              "write to a closed peer: %s", conduit_status_name(rc));
	ck_assert_ptr_nonnull(strstr(conduit_flow_error(c), uri));
	/* The failure sticks, and still raises nothing. */
	size_t n = 0;
	ck_status(conduit_write(c, buf, 1, &n), rc);
	struct conduit_iov iov[2] = {{buf, 10}, {buf, 10}};
	ck_status(conduit_writev(c, iov, 2, &n), rc);
	fk_free_all(c, NULL, l, ctx);
	cd_rmtree(dir);
}
END_TEST

/* ------------------------------------------------------------------ */
/* A full listen queue                                                 */

START_TEST(listen_queue_full_retries)
{
	enum { MAXC = 64 };
	char dir[256], path[512], uri[600];
	cd_tmpdir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/full.sock", dir);
	snprintf(uri, sizeof(uri), "unix://%s", path);

	/* A listener with a tiny queue that nobody accepts from. */
	struct sockaddr_un un;
	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	memcpy(un.sun_path, path, strlen(path) + 1);
	int lfd =
	    socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	ck_assert_int_ge(lfd, 0);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&un, sizeof(un)), 0);
	ck_assert_int_eq(listen(lfd, 2), 0);

	conduit_ctx *ctx = fk_new_ctx();
	conduit_flow *c[MAXC] = {0};
	int nc = 0, waiting = -1;
	for (; nc < MAXC && waiting < 0; nc++) {
		ck_status(conduit_connect(&c[nc], ctx, uri), CONDUIT_OK);
		int rc = conduit_handshake(c[nc]);
		if (rc == CONDUIT_WANT_WRITE)
			waiting = nc;
		else
			ck_status(rc, CONDUIT_OK);
	}
	ck_assert_msg(waiting >= 0, "%d connections never filled the queue",
	              MAXC);

	/* Still waiting a little later: it is retrying, not failed. */
	struct conduit_pollitem it = {.flow = c[waiting],
	                              .events = CONDUIT_POLLOUT};
	size_t nready = 0;
	ck_status(conduit_poll(ctx, &it, 1, 50, &nready), CONDUIT_OK);
	ck_status(conduit_handshake(c[waiting]), CONDUIT_WANT_WRITE);

	/* Make room: the waiting client gets in. */
	int a = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	ck_assert_int_ge(a, 0);
	close(a);
	int rc = CONDUIT_WANT_WRITE;
	uint64_t deadline = cd_now_ms() + (uint64_t)cd_scaled(3000);
	while (rc == CONDUIT_WANT_WRITE) {
		ck_assert_msg(cd_now_ms() < deadline,
		              "the waiting client never got "
		              "in after room was made");
		ck_status(conduit_poll(ctx, &it, 1, 200, &nready), CONDUIT_OK);
		rc = conduit_handshake(c[waiting]);
	}
	ck_assert_msg(rc == CONDUIT_OK, "waiting client: %s (%s)",
	              conduit_status_name(rc), conduit_flow_error(c[waiting]));

	/* It is really connected: its byte arrives on the last
	 * connection in the queue. */
	ck_status(conduit_write_all(c[waiting], "w", 1, NULL, cd_scaled(1000)),
	          CONDUIT_OK);
	int last = -1, accepted = 0;
	for (int i = 0; i < MAXC; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			break;
		accepted++;
		if (last >= 0)
			close(last);
		last = fd;
	}
	ck_assert_int_eq(accepted, nc - 1);
	ck_assert_int_ge(last, 0);
	char b = 0;
	struct pollfd p = {.fd = last, .events = POLLIN};
	ck_assert_int_eq(poll(&p, 1, cd_scaled(2000)), 1);
	ck_assert_int_eq(read(last, &b, 1), 1);
	ck_assert_int_eq(b, 'w');
	close(last);
	for (int i = 0; i < nc; i++)
		conduit_flow_free(c[i]);
	close(lfd);
	conduit_ctx_free(ctx);
	cd_rmtree(dir);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Accept back-off when descriptors run out                            */

static int highest_open_fd(void)
{
	int hi = -1;
	DIR *d = opendir("/proc/self/fd");
	if (d == NULL)
		return -1;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		int fd = atoi(e->d_name);
		if (e->d_name[0] != '.' && fd > hi)
			hi = fd;
	}
	closedir(d);
	return hi;
}

/* Runs in a forked peer, since it takes the process's descriptors away. */
static int emfile_backoff(const char *uri)
{
	conduit_ctx *ctx = NULL;
	if (conduit_ctx_new(&ctx) != CONDUIT_OK)
		return 1;
	conduit_listener *l = NULL;
	if (conduit_listen(&l, ctx, uri) != CONDUIT_OK)
		return 2;
	conduit_flow *c = NULL;
	if (conduit_connect_wait(&c, ctx, uri, cd_scaled(2000)) != CONDUIT_OK)
		return 3;
	if (conduit_write_all(c, "e", 1, NULL, cd_scaled(1000)) != CONDUIT_OK)
		return 4;

	/* No descriptor left: the limit just above the highest one in
	 * use, and every free number below it taken. */
	int hi = highest_open_fd();
	if (hi < 0)
		return 5;
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 6;
	rl.rlim_cur = (rlim_t)hi + 2; /* at least one filler, freed later */
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 7;
	/* Descriptors below the highest may be free (a parent may have left
	 * a high one open): fill them all. */
	enum { MAXFILL = 4096 };
	static int filler[MAXFILL];
	int nfill = 0;
	for (; nfill < MAXFILL; nfill++) {
		filler[nfill] = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (filler[nfill] < 0)
			break;
	}
	if (nfill == 0 || nfill == MAXFILL || errno != EMFILE)
		return 8;

	conduit_flow *s = NULL;
	int rc = conduit_accept(&s, l);
	if (rc != CONDUIT_ERR_TOO_MANY_FILES || s != NULL)
		return 10;
	if (strstr(conduit_listener_error(l), uri) == NULL)
		return 11;
	/* Backing off: no retry right away. */
	if (conduit_accept(&s, l) != CONDUIT_WANT_READ)
		return 12;

	/* During the back-off conduit_poll() must sleep, not report the
	 * (still readable) listener again and again. */
	int wakeups = 0;
	uint64_t start = cd_now_ms();
	for (;;) {
		uint64_t now = cd_now_ms();
		if (now - start >= 300)
			break;
		struct conduit_pollitem it = {.listener = l,
		                              .events = CONDUIT_POLLIN};
		size_t nready = 0;
		if (conduit_poll(ctx, &it, 1, (int)(300 - (now - start)),
		                 &nready) != CONDUIT_OK)
			return 13;
		if (nready == 0)
			continue;
		wakeups++;
		rc = conduit_accept(&s, l);
		if (rc != CONDUIT_ERR_TOO_MANY_FILES && rc != CONDUIT_WANT_READ)
			return 14;
	}
	if (wakeups > 10)
		return 15;
	if (wakeups < 1)
		return 16; /* the back-off must end */

	/* A descriptor comes free: the connection is accepted. */
	close(filler[--nfill]);
	if (conduit_accept_wait(&s, l, cd_scaled(2000)) != CONDUIT_OK)
		return 17;
	char b = 0;
	size_t n = 0;
	if (conduit_read_wait(s, &b, 1, &n, cd_scaled(1000)) != CONDUIT_OK ||
	    b != 'e')
		return 18;
	return 0;
}

START_TEST(accept_backs_off_on_emfile)
{
	char dir[256], uri[512];
	cd_tmpdir(dir, sizeof(dir));
	sock_uri(uri, sizeof(uri), dir, "emfile.sock");
	pid_t pid = cd_fork_peer();
	if (pid == 0)
		_exit(emfile_backoff(uri));
	int r = cd_wait_peer(pid, cd_scaled(8000));
	ck_assert_msg(r != 15, "conduit_poll() woke more than 10 times in "
	                       "300 ms during the accept back-off");
	ck_assert_msg(r == 0, "accept back-off check failed at step %d", r);
	cd_rmtree(dir);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Descriptor flags                                                    */

static void check_fd_flags(const conduit_flow *f, const char *what)
{
	int fd = conduit_flow_fd(f);
	ck_assert_msg(fd >= 0, "%s: no descriptor", what);
	int fdflags = fcntl(fd, F_GETFD);
	ck_assert_int_ge(fdflags, 0);
	ck_assert_msg(fdflags & FD_CLOEXEC,
	              "%s: descriptor is not "
	              "close-on-exec",
	              what);
	int flflags = fcntl(fd, F_GETFL);
	ck_assert_int_ge(flflags, 0);
	ck_assert_msg(flflags & O_NONBLOCK, "%s: descriptor blocks", what);
}

START_TEST(descriptors_close_on_exec)
{
	char dir[256], uri[512], name[128], abs[200];
	cd_tmpdir(dir, sizeof(dir));
	sock_uri(uri, sizeof(uri), dir, "cloexec.sock");
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = NULL;
	ck_status(conduit_listen(&l, ctx, uri), CONDUIT_OK);
	conduit_flow *c = NULL, *s = NULL;
	fk_pair(ctx, l, NULL, &c, &s);
	check_fd_flags(c, "connected flow");
	check_fd_flags(s, "accepted flow");
	conduit_flow_free(c);
	conduit_flow_free(s);
	conduit_listener_free(l);

	abstract_name(name, sizeof(name), "cloexec");
	snprintf(abs, sizeof(abs), "unix-abstract://%s", name);
	ck_status(conduit_listen(&l, ctx, abs), CONDUIT_OK);
	fk_pair(ctx, l, NULL, &c, &s);
	check_fd_flags(c, "connected abstract flow");
	check_fd_flags(s, "accepted abstract flow");
	fk_free_all(c, s, l, ctx);
	cd_rmtree(dir);
}
END_TEST

int main(void)
{
	const struct cd_test tests[] = {
	    CD_TEST(echo_64mib_nonblocking_client, 60),
	    CD_TEST(stream_64mib_blocking_each_way, 60),
	    CD_TEST(half_close, 0),
	    CD_TEST(writev_gather_in_order, 20),
	    CD_TEST(writev_leading_empty_buffers, 0),
	    CD_TEST(connect_missing_socket_file, 0),
	    CD_TEST(connect_refused_on_stale_socket, 0),
	    CD_TEST(path_too_long, 0),
	    CD_TEST(long_path_binds_in_place, 0),
	    CD_TEST(listen_on_regular_file_leaves_it_alone, 0),
	    CD_TEST(listen_replaces_stale_socket, 0),
	    CD_TEST(listen_on_live_socket_is_in_use, 0),
	    CD_TEST(listener_free_removes_its_file_only, 0),
	    CD_TEST(mode_option_and_permissions, 0),
	    CD_TEST(peer_credentials_both_sides, 0),
	    CD_TEST(abstract_echo, 30),
	    CD_TEST(abstract_interop_socat_listens, 20),
	    CD_TEST(abstract_interop_socat_connects, 20),
	    CD_TEST(write_after_peer_closed_no_sigpipe, 0),
	    CD_TEST(listen_queue_full_retries, 0),
	    CD_TEST(accept_backs_off_on_emfile, 0),
	    CD_TEST(descriptors_close_on_exec, 0),
	};
	return cd_run(
	    cd_suite("unix", tests, sizeof(tests) / sizeof(tests[0])));
}
