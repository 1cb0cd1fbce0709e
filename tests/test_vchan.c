/*
 * test_vchan.c - the Xen vchan backend: the real libxenvchan between two
 * processes playing two domains, over the user-space emulation of grant
 * tables, event channels and XenStore in stubs/xen.
 *
 * ctest starts this program with the emulation first on LD_LIBRARY_PATH;
 * the first test makes sure it is the emulation that got loaded.  Each
 * test gets its own host directory (CONDUIT_XEN_DIR).  The test process
 * is domain 2 unless a test says otherwise; forked peers set their own
 * CONDUIT_XEN_DOMID, which the emulation reads at each call, before they
 * touch Xen.  Peers report through their exit status only.
 */
#include "flowkit.h"
#include "harness.h"

#include <conduit/conduit.h>
#include <conduit/vchan.h>
#ifdef CONDUIT_HAVE_TLS
#include <conduit/tls.h>
#endif

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <libxenvchan.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xenstore.h>

#define BIG (64 * MiB)

static char host_dir[256];

static void set_domain(unsigned d)
{
	char v[16];
	snprintf(v, sizeof(v), "%u", d);
	setenv("CONDUIT_XEN_DOMID", v, 1);
}

static void host_setup(void)
{
	/* Grant pages and XenStore are files: on a RAM file system when
	 * there is one, as Xen's are memory. */
	struct stat st;
	if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) &&
	    access("/dev/shm", W_OK | X_OK) == 0) {
		snprintf(host_dir, sizeof(host_dir),
		         "/dev/shm/conduit-test-XXXXXX");
		ck_assert_msg(mkdtemp(host_dir) != NULL, "mkdtemp %s: %s",
		              host_dir, strerror(errno));
	} else {
		cd_tmpdir(host_dir, sizeof(host_dir));
	}
	setenv("CONDUIT_XEN_DIR", host_dir, 1);
	set_domain(2);
}

static int count_grants(void)
{
	char p[300];
	snprintf(p, sizeof(p), "%s/grant", host_dir);
	DIR *d = opendir(p);
	int n = 0;
	if (d == NULL)
		return 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void host_teardown(bool clean)
{
	if (clean)
		ck_assert_msg(count_grants() == 0, "%d grant files left behind",
		              count_grants());
	cd_rmtree(host_dir);
}

static void nap_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Peer: domain `dom` listens on uri and echoes `count` connections. */
static pid_t spawn_echo(unsigned dom, const char *uri, int count)
{
	pid_t pid = cd_fork_peer();
	if (pid != 0)
		return pid;
	set_domain(dom);
	conduit_ctx *ctx;
	conduit_listener *l;
	if (conduit_ctx_new(&ctx) != CONDUIT_OK)
		_exit(1);
	if (conduit_listen(&l, ctx, uri) != CONDUIT_OK) {
		fprintf(stderr, "peer listen: %s\n", conduit_ctx_error(ctx));
		_exit(2);
	}
	for (int i = 0; i < count; i++) {
		conduit_flow *f;
		if (conduit_accept_wait(&f, l, cd_scaled(20000)) !=
		    CONDUIT_OK) {
			fprintf(stderr, "peer accept: %s\n",
			        conduit_listener_error(l));
			_exit(3);
		}
		int rc = fk_echo_blocking(f, cd_scaled(60000));
		conduit_flow_free(f);
		if (rc != 0)
			_exit(rc);
	}
	conduit_listener_free(l);
	conduit_ctx_free(ctx);
	_exit(0);
}

START_TEST(emulation_is_loaded)
{
	/* Only the emulation exports this symbol: the real libraries would
	 * need a hypervisor and would make every test below meaningless. */
	void *sym = dlsym(RTLD_DEFAULT, "conduit_xen_emulation");
	ck_assert_msg(sym != NULL,
	              "the Xen emulation is not loaded: run with "
	              "LD_LIBRARY_PATH=<build>/stubs/xen (ctest does)");
}
END_TEST

static void echo_case(const char *listen_uri, const char *connect_uri,
                      uint64_t total)
{
	host_setup();
	pid_t pid = spawn_echo(1, listen_uri, 1);
	conduit_ctx *ctx = fk_new_ctx();
	fk_echo_client(ctx, connect_uri, 7, total, cd_scaled(60000));
	conduit_ctx_free(ctx);
	ck_assert_int_eq(cd_wait_peer(pid, cd_scaled(20000)), 0);
	host_teardown(true);
}

START_TEST(echo_in_page_ring)
{
	echo_case("vchan://2/echo", "vchan://1/echo", 1 * MiB);
}
END_TEST

START_TEST(bulk_64mib_in_page_ring)
{
	echo_case("vchan://2/bulk", "vchan://1/bulk", BIG);
}
END_TEST

START_TEST(bulk_64mib_multi_page_ring)
{
	echo_case("vchan://2/bulk?read-ring=65536&write-ring=262144",
	          "vchan://1/bulk", BIG);
}
END_TEST

START_TEST(successive_connections)
{
	host_setup();
	pid_t pid = spawn_echo(1, "vchan://2/many", 25);
	conduit_ctx *ctx = fk_new_ctx();
	for (int i = 0; i < 25; i++)
		fk_echo_client(ctx, "vchan://1/many", (uint32_t)i, 4096 + i,
		               cd_scaled(20000));
	conduit_ctx_free(ctx);
	ck_assert_int_eq(cd_wait_peer(pid, cd_scaled(20000)), 0);
	host_teardown(true);
}
END_TEST

START_TEST(named_server_and_lookup)
{
	host_setup();
	pid_t pid = spawn_echo(1, "vchan://logger/syslog?write-ring=65536", 2);
	conduit_ctx *ctx = fk_new_ctx();
	unsigned d = 99;
	/* The listener registers its name; wait until it has. */
	for (int i = 0;
	     i < 400 && conduit_vchan_lookup(ctx, "logger", &d) != CONDUIT_OK;
	     i++)
		nap_ms(5);
	ck_assert_uint_eq(d, 1);
	ck_status(conduit_vchan_register_name(ctx, "client-a"), CONDUIT_OK);
	fk_echo_client(ctx, "vchan://logger/syslog", 3, 2 * MiB,
	               cd_scaled(20000));
	fk_echo_client(ctx, "vchan://logger/syslog", 4, 1000, cd_scaled(20000));
	ck_assert_int_eq(cd_wait_peer(pid, cd_scaled(20000)), 0);
	/* The listener is gone and so is its name. */
	ck_status(conduit_vchan_lookup(ctx, "logger", &d), CONDUIT_ERR_RESOLVE);
	conduit_flow *f = NULL;
	ck_status(conduit_connect(&f, ctx, "vchan://nobody/x"),
	          CONDUIT_ERR_RESOLVE);
	ck_assert_ptr_null(f);
	ck_assert_ptr_nonnull(strstr(conduit_ctx_error(ctx), "nobody"));
	conduit_ctx_free(ctx);
	host_teardown(true);
}
END_TEST

START_TEST(hostile_domain_refused)
{
	host_setup();
	/* Domain 1 holds "logger". */
	set_domain(1);
	conduit_ctx *owner = fk_new_ctx();
	ck_status(conduit_vchan_register_name(owner, "logger"), CONDUIT_OK);
	/* Domain 3 is hostile. */
	set_domain(3);
	conduit_ctx *bad = fk_new_ctx();
	ck_status(conduit_vchan_register_name(bad, "logger"),
	          CONDUIT_ERR_ADDR_IN_USE);
	conduit_listener *l = NULL;
	ck_status(conduit_listen(&l, bad, "vchan://logger/syslog"),
	          CONDUIT_ERR_ADDR_IN_USE);
	/* Changing permissions of a node it does not own: refused. */
	struct xs_handle *xs = xs_open(0);
	ck_assert_ptr_nonnull(xs);
	struct xs_permissions mine[1] = {{3, XS_PERM_READ}};
	ck_assert(
	    !xs_set_permissions(xs, XBT_NULL, "/conduit/logger", mine, 1));
	/* Overwriting the value (announcing needs write access) redirects
	 * nobody: the owner is still domain 1. */
	ck_assert(xs_write(xs, XBT_NULL, "/conduit/logger", "3", 1));
	unsigned d = 0;
	set_domain(2);
	conduit_ctx *victim = fk_new_ctx();
	ck_status(conduit_vchan_lookup(victim, "logger", &d),
	          CONDUIT_ERR_PERMISSION);
	/* A name of its own that claims to be domain 1: refused too. */
	set_domain(3);
	ck_assert(xs_write(xs, XBT_NULL, "/conduit/fake", "1", 1));
	set_domain(2);
	ck_status(conduit_vchan_lookup(victim, "fake", &d),
	          CONDUIT_ERR_PERMISSION);
	conduit_flow *f = NULL;
	ck_status(conduit_connect(&f, victim, "vchan://fake/syslog"),
	          CONDUIT_ERR_PERMISSION);
	ck_assert_ptr_nonnull(strstr(conduit_ctx_error(victim), "owned by"));
	/* Domain 3 cannot read or change another domain's ring keys. */
	set_domain(3);
	ck_assert(!xs_write(xs, XBT_NULL, "/local/domain/1/data/x", "1", 1));
	xs_close(xs);
	conduit_ctx_free(victim);
	conduit_ctx_free(bad);
	set_domain(1);
	conduit_ctx_free(owner);
	host_teardown(true);
}
END_TEST

START_TEST(long_paths_refused)
{
	host_setup();
	conduit_ctx *ctx = fk_new_ctx();
	conduit_flow *f = NULL;
	conduit_listener *l = NULL;
	/* /local/domain/1/data/vchan/2/ + 40 bytes > 49. */
	const char *uri = "vchan://1/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
	ck_status(conduit_connect(&f, ctx, uri), CONDUIT_ERR_PATH_TOO_LONG);
	ck_assert_ptr_nonnull(strstr(conduit_ctx_error(ctx), "libxenvchan"));
	ck_status(conduit_listen(&l, ctx, "vchan://name/aaaaaaaaaaaaaaaaaaaa"),
	          CONDUIT_ERR_PATH_TOO_LONG);
	conduit_ctx_free(ctx);
	host_teardown(true);
}
END_TEST

START_TEST(no_server_refused)
{
	host_setup();
	conduit_ctx *ctx = fk_new_ctx();
	conduit_ctx_set_connect_timeout(ctx, 200);
	conduit_flow *f = NULL;
	ck_status(conduit_connect_wait(&f, ctx, "vchan://1/none", 2000),
	          CONDUIT_ERR_REFUSED);
	conduit_ctx_free(ctx);
	host_teardown(true);
}
END_TEST

START_TEST(peer_killed_mid_transfer)
{
	host_setup();
	pid_t pid = cd_fork_peer();
	if (pid == 0) {
		/* Domain 1 sends forever. */
		set_domain(1);
		conduit_ctx *ctx;
		conduit_listener *l;
		conduit_flow *f;
		if (conduit_ctx_new(&ctx) != CONDUIT_OK ||
		    conduit_listen(&l, ctx, "vchan://2/kill") != CONDUIT_OK ||
		    conduit_accept_wait(&f, l, 20000) != CONDUIT_OK)
			_exit(1);
		static char buf[65536];
		for (;;)
			conduit_write_all(f, buf, sizeof(buf), NULL, 60000);
	}
	conduit_ctx *ctx = fk_new_ctx();
	conduit_flow *f;
	ck_status(conduit_connect_wait(&f, ctx, "vchan://1/kill", 20000),
	          CONDUIT_OK);
	static char buf[65536];
	size_t n, got = 0;
	while (got < 4 * MiB) {
		ck_status(conduit_read_wait(f, buf, sizeof(buf), &n, 10000),
		          CONDUIT_OK);
		got += n;
	}
	kill(pid, SIGKILL);
	int rc;
	uint64_t t0 = cd_now_ms();
	do
		rc = conduit_read_wait(f, buf, sizeof(buf), &n, 10000);
	while (rc == CONDUIT_OK);
	ck_status(rc, CONDUIT_ERR_RESET);
	ck_assert_msg(cd_now_ms() - t0 < 5000, "noticed only after %llu ms",
	              (unsigned long long)(cd_now_ms() - t0));
	ck_assert_ptr_nonnull(strstr(conduit_flow_error(f), "died"));
	conduit_flow_free(f);
	conduit_ctx_free(ctx);
	cd_wait_peer(pid, 1000);
	host_teardown(false);
}
END_TEST

START_TEST(malicious_ring_indexes)
{
	host_setup();
	/* The victim: domain 1 serves and reads, in its own process so a
	 * fault (an out-of-bounds access hitting a guard page) shows as a
	 * signal in its exit status. */
	pid_t victim = cd_fork_peer();
	if (victim == 0) {
		set_domain(1);
		conduit_ctx *ctx;
		conduit_listener *l;
		conduit_flow *f;
		if (conduit_ctx_new(&ctx) != CONDUIT_OK ||
		    conduit_listen(&l, ctx, "vchan://2/evil?read-ring=8192") !=
		        CONDUIT_OK ||
		    conduit_accept_wait(&f, l, 20000) != CONDUIT_OK)
			_exit(1);
		char buf[4096];
		size_t n;
		int rc;
		do
			rc = conduit_read_wait(f, buf, sizeof(buf), &n, 1500);
		while (rc == CONDUIT_OK);
		/* A stalled ring: the deadline, or the framing noticed. */
		int ok = rc == CONDUIT_ERR_TIMED_OUT || rc == CONDUIT_ERR_RESET;
		conduit_flow_free(f);
		conduit_listener_free(l);
		conduit_ctx_free(ctx);
		_exit(ok ? 0 : 10 + rc);
	}
	/* The attacker, domain 2, uses libxenvchan directly and scribbles
	 * over the shared page. */
	struct libxenvchan *c = NULL;
	uint64_t up_by = cd_now_ms() + (uint64_t)cd_scaled(4000);
	while (c == NULL && cd_now_ms() < up_by) {
		char key[128];
		snprintf(key, sizeof(key), "/local/domain/1/data/vchan/2/evil");
		struct xs_handle *xs = xs_open(0);
		char k2[160];
		snprintf(k2, sizeof(k2), "%s/claim", key);
		if (xs != NULL && xs_write(xs, XBT_NULL, k2, "x", 1))
			c = libxenvchan_client_init(NULL, 1, key);
		xs_close(xs);
		if (c == NULL)
			nap_ms(10);
	}
	ck_assert_ptr_nonnull(c);
	uint32_t hdr = 16;
	libxenvchan_write(c, &hdr, 4);
	libxenvchan_write(c, "0123456789abcdef", 16);
	/* XSA-86 class: producer far ahead, consumer behind, orders
	 * rewritten. */
	c->ring->left.prod = 0x7ffffff0u;  /* what the victim reads */
	c->ring->right.cons = 0xfffffff0u; /* what the victim writes */
	c->ring->left_order = 30;
	c->ring->right_order = 30;
	libxenvchan_write(c, &hdr, 4); /* a notification to wake it */
	int st = cd_wait_peer(victim, cd_scaled(20000));
	ck_assert_msg(st == 0, "victim exit status %d (-1: signal or hang)",
	              st);
	libxenvchan_close(c);
	host_teardown(false);
}
END_TEST

START_TEST(resolver_rule_xen_suffix)
{
	host_setup();
	pid_t pid = spawn_echo(1, "vchan://db/echo", 1);
	conduit_ctx *ctx = fk_new_ctx();
	ck_status(conduit_ctx_add_rules(
	              ctx, "map *.xen vchan://{label}/{scheme}\n", "test"),
	          CONDUIT_OK);
	ck_status(conduit_ctx_add_service(ctx, "echo", 7, 0), CONDUIT_OK);
	conduit_endpoint *ep = NULL;
	ck_status(conduit_resolve(&ep, ctx, "echo://db.xen/"), CONDUIT_OK);
	ck_assert_str_eq(conduit_endpoint_uri(ep), "vchan://db/echo");
	conduit_endpoint_free(ep);
	unsigned d = 0;
	for (int i = 0;
	     i < 400 && conduit_vchan_lookup(ctx, "db", &d) != CONDUIT_OK; i++)
		nap_ms(5);
	fk_echo_client(ctx, "echo://db.xen/", 11, 100000, cd_scaled(20000));
	conduit_ctx_free(ctx);
	ck_assert_int_eq(cd_wait_peer(pid, cd_scaled(20000)), 0);
	host_teardown(true);
}
END_TEST

/*
 * In Xen an event channel is connected once the client has bound it, so
 * a server that reads what the client wrote before the server ever asked
 * for an event still wakes the client.  The emulation used to leave the
 * client's connection queued until the server's first wait and drop the
 * server's notifications meanwhile: a client that had filled the ring
 * then waited forever for room (a benchmark stalled after its first full
 * ring, only under load, when the server happened to start late).  Both
 * ends are this process, in turn domain 1 and domain 2, so the order is
 * the bad one every time.
 */
START_TEST(server_notify_before_its_first_wait)
{
	host_setup();
	const char *path = "/local/domain/1/data/vchan/2/early";
	set_domain(1);
	struct libxenvchan *srv = libxenvchan_server_init(NULL, 2, path, 0, 0);
	ck_assert_ptr_nonnull(srv);
	srv->blocking = 0;
	set_domain(2);
	struct libxenvchan *cli = libxenvchan_client_init(NULL, 1, path);
	ck_assert_ptr_nonnull(cli);
	cli->blocking = 0;
	static char buf[4096];
	int n, put = 0;
	for (int i = 0; i < 16; i++) {
		n = libxenvchan_write(cli, buf, sizeof(buf));
		ck_assert_int_ge(n, 0);
		if (n == 0)
			break;
		put += n;
	}
	ck_assert_int_gt(put, 0);
	/* Full; asking also requests a notification when there is room. */
	ck_assert_int_eq(libxenvchan_buffer_space(cli), 0);
	struct pollfd p = {libxenvchan_fd_for_select(cli), POLLIN, 0};
	ck_assert_int_eq(poll(&p, 1, 0), 0);

	set_domain(1);
	char got[100];
	ck_assert_int_eq(libxenvchan_read(srv, got, sizeof(got)),
	                 (int)sizeof(got));
	ck_assert_msg(poll(&p, 1, cd_scaled(2000)) == 1 && (p.revents & POLLIN),
	              "the server made room before it first waited for an "
	              "event, and the client was not told");
	set_domain(2);
	ck_assert_int_eq(libxenvchan_wait(cli), 0);
	ck_assert_int_ge(libxenvchan_buffer_space(cli), (int)sizeof(got));
	/* And the other way, now that the server has looked. */
	ck_assert_int_eq(poll(&p, 1, 0), 0);
	set_domain(1);
	ck_assert_int_eq(libxenvchan_write(srv, "x", 1), 1);
	ck_assert_int_eq(poll(&p, 1, cd_scaled(2000)), 1);
	set_domain(2);
	libxenvchan_close(cli);
	set_domain(1);
	libxenvchan_close(srv);
	host_teardown(true);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Waking up: a peer's write must wake a waiter, and nothing else must  */

/* Peer-safe: one byte over a pipe, waiting at most ms for it. */
static int pipe_wait(int fd, int ms)
{
	struct pollfd p = {fd, POLLIN, 0};
	char c;
	int r;
	do
		r = poll(&p, 1, ms);
	while (r < 0 && errno == EINTR);
	return r == 1 && read(fd, &c, 1) == 1 ? 0 : -1;
}

static int pipe_say(int fd)
{
	return write(fd, "!", 1) == 1 ? 0 : -1;
}

/*
 * After the peer wrote, a waiter's descriptors are readable (the write
 * sent a notification) and the flow is ready without waiting; before,
 * neither.  The peer writes only when told, so nothing here is timed.
 */
START_TEST(peer_write_wakes_waiter)
{
	host_setup();
	int go[2], done[2];
	ck_assert(pipe(go) == 0 && pipe(done) == 0);
	pid_t pid = cd_fork_peer();
	if (pid == 0) {
		set_domain(1);
		conduit_ctx *ctx;
		conduit_listener *l;
		conduit_flow *f;
		if (conduit_ctx_new(&ctx) != CONDUIT_OK ||
		    conduit_listen(&l, ctx, "vchan://2/wake") != CONDUIT_OK ||
		    conduit_accept_wait(&f, l, 20000) != CONDUIT_OK)
			_exit(1);
		size_t n = 0;
		if (pipe_wait(go[0], 20000) != 0 ||
		    conduit_write(f, "x", 1, &n) != CONDUIT_OK || n != 1 ||
		    pipe_say(done[1]) != 0)
			_exit(2);
		char c;
		/* Until the test has read it and closed. */
		int rc = conduit_read_wait(f, &c, 1, &n, 20000);
		fk_free_all(NULL, f, l, ctx);
		_exit(rc == CONDUIT_EOF ? 0 : 3);
	}
	close(go[0]);
	close(done[1]);
	conduit_ctx *ctx = fk_new_ctx();
	conduit_flow *f = NULL;
	ck_status(
	    conduit_connect_wait(&f, ctx, "vchan://1/wake", cd_scaled(20000)),
	    CONDUIT_OK);
	char c;
	size_t n = 0;
	ck_status(conduit_read(f, &c, 1, &n), CONDUIT_WANT_READ);
	struct conduit_pollitem it = {.flow = f, .events = CONDUIT_POLLIN};
	struct pollfd fds[4];
	size_t nfds = 0;
	int tmo = 0;
	ck_status(conduit_wait_fds(ctx, &it, 1, fds, 4, &nfds, &tmo),
	          CONDUIT_OK);
	/* The flow's descriptor comes first; a backend of the context may
	 * add its own after it. */
	ck_assert_uint_ge(nfds, 1);
	ck_assert_int_ne(tmo, 0); /* nothing is ready */
	ck_assert_int_eq(poll(fds, 1, 0), 0);
	ck_status(conduit_poll(ctx, &it, 1, 0, &n), CONDUIT_OK);
	ck_assert_uint_eq(n, 0);

	ck_assert_int_eq(pipe_say(go[1]), 0);
	ck_assert_int_eq(pipe_wait(done[0], cd_scaled(20000)), 0);
	/* The peer has written: the descriptor must say so now, since a
	 * waiter sleeps in poll(2) on nothing else. */
	ck_assert_msg(poll(fds, 1, 0) == 1 && (fds[0].revents & POLLIN),
	              "the peer's write did not make the event descriptor "
	              "readable");
	ck_status(conduit_poll(ctx, &it, 1, 0, &n), CONDUIT_OK);
	ck_assert_uint_eq(n, 1);
	ck_status(conduit_read(f, &c, 1, &n), CONDUIT_OK);
	ck_assert_int_eq(c, 'x');
	ck_status(conduit_close_wait(f, cd_scaled(5000)), CONDUIT_OK);
	conduit_flow_free(f);
	conduit_ctx_free(ctx);
	close(go[1]);
	close(done[0]);
	ck_assert_int_eq(cd_wait_peer(pid, cd_scaled(20000)), 0);
	host_teardown(true);
}
END_TEST

/*
 * The peer ended its stream and then stopped reading: a writer that
 * fills the ring must sleep until the peer reads or goes, not spin.  The
 * end of the peer's stream is news for reads only.
 */
START_TEST(blocked_writer_after_peer_eof_sleeps)
{
	host_setup();
	int go[2];
	ck_assert(pipe(go) == 0);
	pid_t pid = cd_fork_peer();
	if (pid == 0) {
		close(go[1]);
		set_domain(1);
		conduit_ctx *ctx;
		conduit_listener *l;
		conduit_flow *f;
		if (conduit_ctx_new(&ctx) != CONDUIT_OK ||
		    conduit_listen(&l, ctx,
		                   "vchan://2/spin?read-ring=4096&"
		                   "write-ring=4096") != CONDUIT_OK ||
		    conduit_accept_wait(&f, l, 20000) != CONDUIT_OK)
			_exit(1);
		if (conduit_shutdown(f, CONDUIT_SHUT_WR) != CONDUIT_OK)
			_exit(2);
		/* Reads nothing until told to go. */
		if (pipe_wait(go[0], 30000) != 0)
			_exit(3);
		fk_free_all(NULL, f, l, ctx);
		_exit(0);
	}
	close(go[0]);
	conduit_ctx *ctx = fk_new_ctx();
	conduit_flow *f = NULL;
	ck_status(
	    conduit_connect_wait(&f, ctx, "vchan://1/spin", cd_scaled(20000)),
	    CONDUIT_OK);
	char c;
	size_t n = 0;
	ck_status(conduit_read_wait(f, &c, 1, &n, cd_scaled(5000)),
	          CONDUIT_EOF);
	static char buf[256 * 1024];
	uint64_t t0 = cd_now_ms(), cpu0 = cd_cpu_ms();
	int rc = conduit_write_all(f, buf, sizeof(buf), &n, 1500);
	uint64_t wall = cd_now_ms() - t0, cpu = cd_cpu_ms() - cpu0;
	ck_status(rc, CONDUIT_ERR_TIMED_OUT);
	ck_assert_msg(n > 0 && n < sizeof(buf), "wrote %zu bytes", n);
	ck_assert_msg(wall >= 1400, "gave up after %llu ms",
	              (unsigned long long)wall);
	ck_assert_msg(cpu * 10 < wall,
	              "blocked on a full ring for %llu ms, used %llu ms of "
	              "CPU: the wait spins",
	              (unsigned long long)wall, (unsigned long long)cpu);
	ck_assert_int_eq(pipe_say(go[1]), 0);
	conduit_flow_free(f);
	conduit_ctx_free(ctx);
	close(go[1]);
	ck_assert_int_eq(cd_wait_peer(pid, cd_scaled(20000)), 0);
	host_teardown(true);
}
END_TEST

#define ABORT_CYCLES 200
#define ABORT_BYTES  64

/* Peer for abortive_cycles: echo ABORT_BYTES on each connection, then
 * wait for the client's abortive close.  Exit status: how many
 * connections failed before their bytes were through (at most 100). */
static void abort_server(void)
{
	set_domain(1);
	conduit_ctx *ctx;
	conduit_listener *l;
	if (conduit_ctx_new(&ctx) != CONDUIT_OK ||
	    conduit_listen(&l, ctx, "vchan://2/abort") != CONDUIT_OK)
		_exit(101);
	int bad = 0;
	uint64_t end = cd_now_ms() + (uint64_t)cd_scaled(90000);
	for (int i = 0; i < ABORT_CYCLES && cd_now_ms() < end; i++) {
		conduit_flow *f;
		if (conduit_accept_wait(&f, l, 20000) != CONDUIT_OK)
			_exit(102);
		char buf[ABORT_BYTES];
		size_t got = 0, n;
		int rc = CONDUIT_OK;
		while (got < sizeof(buf) && rc == CONDUIT_OK) {
			rc = conduit_read_wait(f, buf + got, sizeof(buf) - got,
			                       &n, 5000);
			got += rc == CONDUIT_OK ? n : 0;
		}
		if (rc != CONDUIT_OK ||
		    conduit_write_all(f, buf, sizeof(buf), NULL, 5000) !=
		        CONDUIT_OK) {
			fprintf(stderr, "abort server, connection %d: %s\n", i,
			        conduit_flow_error(f));
			bad++;
		}
		/* Until the client's abortive close shows. */
		do
			rc = conduit_read_wait(f, buf, sizeof(buf), &n, 5000);
		while (rc == CONDUIT_OK);
		conduit_flow_free(f);
	}
	conduit_listener_free(l);
	conduit_ctx_free(ctx);
	_exit(bad > 100 ? 100 : bad);
}

/*
 * Connections closed abortively, one after another: the survivor of each
 * notices its dead peer, and that must never reach the next connection,
 * whose event ports may carry the numbers the dead one had.
 */
START_TEST(abortive_cycles_no_spurious_reset)
{
	host_setup();
	pid_t pid = cd_fork_peer();
	if (pid == 0)
		abort_server();
	conduit_ctx *ctx = fk_new_ctx();
	int bad = 0, done = 0;
	uint64_t end = cd_now_ms() + (uint64_t)cd_scaled(90000);
	for (; done < ABORT_CYCLES && cd_now_ms() < end; done++) {
		conduit_flow *f = NULL;
		char out[ABORT_BYTES], in[ABORT_BYTES];
		memset(out, 'a' + done % 26, sizeof(out));
		size_t got = 0, n;
		int rc = conduit_connect_wait(&f, ctx, "vchan://1/abort",
		                              cd_scaled(20000));
		ck_assert_msg(rc == CONDUIT_OK, "connection %d: %s", done,
		              conduit_ctx_error(ctx));
		rc = conduit_write_all(f, out, sizeof(out), NULL, 5000);
		while (rc == CONDUIT_OK && got < sizeof(in)) {
			rc = conduit_read_wait(f, in + got, sizeof(in) - got,
			                       &n, 5000);
			got += rc == CONDUIT_OK ? n : 0;
		}
		if (rc != CONDUIT_OK || memcmp(in, out, sizeof(in)) != 0) {
			fprintf(stderr, "connection %d: %s: %s\n", done,
			        conduit_status_name(rc), conduit_flow_error(f));
			bad++;
		}
		/* Abortive: freed without conduit_close(). */
		conduit_flow_free(f);
	}
	conduit_ctx_free(ctx);
	ck_assert_msg(done == ABORT_CYCLES, "only %d cycles in time", done);
	int st = cd_wait_peer(pid, cd_scaled(20000));
	ck_assert_msg(bad == 0 && st == 0,
	              "spurious resets: %d on the client side, server "
	              "status %d",
	              bad, st);
	host_teardown(true);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Plain libxenvchan peers, and the negotiation between conduit ends    */

/* vchan_plain (a program using libxenvchan's API alone) as domain dom. */
static pid_t spawn_plain(unsigned dom, const char *role, unsigned peer,
                         const char *path, const char *mode, const char *bytes)
{
	pid_t pid = cd_fork_peer();
	if (pid != 0)
		return pid;
	set_domain(dom);
	char p[16];
	snprintf(p, sizeof(p), "%u", peer);
	execl(VCHAN_PLAIN, VCHAN_PLAIN, role, p, path, mode, bytes,
	      (char *)NULL);
	_exit(127);
}

/* Send total bytes of a pattern and read them back, with no half-close
 * (a plain peer has none).  0, or the step that failed. */
static int pump_plain(conduit_ctx *ctx, conduit_flow *f, uint64_t total)
{
	static uint8_t out[16384], in[65536];
	uint64_t sent = 0, got = 0;
	uint64_t end = cd_now_ms() + (uint64_t)cd_scaled(30000);
	while (got < total) {
		if (cd_now_ms() > end)
			return 1;
		struct conduit_pollitem it = {
		    .flow = f,
		    .events =
		        CONDUIT_POLLIN | (sent < total ? CONDUIT_POLLOUT : 0u)};
		size_t n = 0;
		if (conduit_poll(ctx, &it, 1, 1000, &n) != CONDUIT_OK)
			return 2;
		if (it.revents & CONDUIT_POLLOUT) {
			size_t k = total - sent < sizeof(out)
			               ? (size_t)(total - sent)
			               : sizeof(out);
			cd_pattern(9, sent, out, k);
			int rc = conduit_write(f, out, k, &n);
			if (rc == CONDUIT_OK)
				sent += n;
			else if (!fk_is_want(rc))
				return 3;
		}
		if (it.revents & CONDUIT_POLLIN) {
			int rc = conduit_read(f, in, sizeof(in), &n);
			if (rc == CONDUIT_OK) {
				if (cd_pattern_check(9, got, in, n) != n)
					return 4;
				got += n;
			} else if (!fk_is_want(rc)) {
				return 5;
			}
		}
	}
	return 0;
}

/*
 * A plain libxenvchan server (no advertisement beside ring-ref): conduit
 * connects raw and claims nothing.  Bytes pass unframed both ways; a
 * half-close is refused, saying why, and leaves the flow usable; closing
 * ends the plain echo, which exits 0 only when it saw the close.
 */
START_TEST(plain_server_conduit_client)
{
	host_setup();
	/* The test process is domain 2; the plain server, domain 1. */
	pid_t pid = spawn_plain(
	    1, "server", 2, "/local/domain/1/data/vchan/2/raw", "echo", NULL);
	conduit_ctx *ctx = fk_new_ctx();
	conduit_flow *f = NULL;
	ck_status(
	    conduit_connect_wait(&f, ctx, "vchan://1/raw", cd_scaled(20000)),
	    CONDUIT_OK);
	int r = pump_plain(ctx, f, 3 * MiB);
	ck_assert_msg(r == 0,
	              "echo through the plain server failed at "
	              "step %d: %s",
	              r, conduit_flow_error(f));
	ck_status(conduit_shutdown(f, CONDUIT_SHUT_WR),
	          CONDUIT_ERR_UNSUPPORTED);
	ck_assert_msg(strstr(conduit_flow_error(f), "plain libxenvchan") !=
	                      NULL &&
	                  strstr(conduit_flow_error(f), "half-close") != NULL,
	              "message: %s", conduit_flow_error(f));
	/* Still usable after the refusal. */
	ck_status(conduit_write_all(f, "x", 1, NULL, cd_scaled(5000)),
	          CONDUIT_OK);
	char c = 0;
	size_t n = 0;
	ck_status(conduit_read_wait(f, &c, 1, &n, cd_scaled(5000)), CONDUIT_OK);
	ck_assert_int_eq(c, 'x');
	ck_status(conduit_close_wait(f, cd_scaled(5000)), CONDUIT_OK);
	conduit_flow_free(f);
	conduit_ctx_free(ctx);
	ck_assert_int_eq(cd_wait_peer(pid, cd_scaled(20000)), 0);
	host_teardown(true);
}
END_TEST

/*
 * A plain libxenvchan client of a conduit listener: it never claims, so
 * the listener treats it as plain.  It sends, checks its echo and closes:
 * the conduit side sees the end of the stream (CONDUIT_EOF), not a reset.
 */
START_TEST(plain_client_conduit_server)
{
	host_setup();
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = NULL;
	ck_status(conduit_listen(&l, ctx, "vchan://1/rawc?read-ring=65536"),
	          CONDUIT_OK);
	pid_t pid =
	    spawn_plain(1, "client", 2, "/local/domain/2/data/vchan/1/rawc",
	                "send", "3000000");
	conduit_flow *f = NULL;
	ck_status(conduit_accept_wait(&f, l, cd_scaled(20000)), CONDUIT_OK);
	static char buf[65536];
	size_t n = 0, total = 0;
	int rc;
	uint64_t end = cd_now_ms() + (uint64_t)cd_scaled(30000);
	while ((rc = conduit_read_wait(f, buf, sizeof(buf), &n,
	                               cd_scaled(10000))) == CONDUIT_OK &&
	       cd_now_ms() < end) {
		total += n;
		ck_status(conduit_write_all(f, buf, n, NULL, cd_scaled(10000)),
		          CONDUIT_OK);
	}
	ck_assert_msg(rc == CONDUIT_EOF, "after %zu bytes: %s: %s", total,
	              conduit_status_name(rc), conduit_flow_error(f));
	ck_assert_uint_eq(total, 3000000);
	ck_assert_int_eq(cd_wait_peer(pid, cd_scaled(20000)), 0);
	/* Writing after the plain peer's close: closed, not reset. */
	ck_status(conduit_write(f, "x", 1, &n), CONDUIT_ERR_CLOSED);
	conduit_flow_free(f);
	conduit_listener_free(l);
	conduit_ctx_free(ctx);
	host_teardown(true);
}
END_TEST

/*
 * Two conduit ends agree on the framed wire through XenStore: the
 * listener advertises it beside ring-ref (readable by the client's
 * domain), the client claims the ring with the version it speaks.  The
 * framed wire is what gives a half-close: the client ends its stream
 * and still reads the answer.
 */
START_TEST(conduit_ends_negotiate_framing)
{
	host_setup();
	pid_t pid = cd_fork_peer();
	if (pid == 0) {
		set_domain(1);
		conduit_ctx *sctx;
		conduit_listener *l;
		conduit_flow *f;
		if (conduit_ctx_new(&sctx) != CONDUIT_OK ||
		    conduit_listen(&l, sctx, "vchan://2/neg") != CONDUIT_OK ||
		    conduit_accept_wait(&f, l, 20000) != CONDUIT_OK)
			_exit(1);
		char b[16];
		size_t n, got = 0;
		int rc;
		while ((rc = conduit_read_wait(f, b + got, sizeof(b) - got, &n,
		                               10000)) == CONDUIT_OK)
			got += n;
		if (rc != CONDUIT_EOF || got != 5 || memcmp(b, "hello", 5) != 0)
			_exit(2);
		if (conduit_write_all(f, "done", 4, NULL, 10000) !=
		        CONDUIT_OK ||
		    conduit_close_wait(f, 10000) != CONDUIT_OK)
			_exit(3);
		fk_free_all(NULL, f, l, sctx);
		_exit(0);
	}
	/* The advertisement, as the client's domain sees it. */
	struct xs_handle *xs = xs_open(0);
	ck_assert_ptr_nonnull(xs);
	const char *ad = "/local/domain/1/data/vchan/2/neg/conduit-wire";
	char *v = NULL;
	for (uint64_t end = cd_now_ms() + (uint64_t)cd_scaled(10000);
	     v == NULL && cd_now_ms() < end; nap_ms(5))
		v = xs_read(xs, XBT_NULL, ad, NULL);
	ck_assert_msg(v != NULL, "no %s", ad);
	ck_assert_str_eq(v, "1");
	free(v);
	v = xs_read(xs, XBT_NULL, "/local/domain/1/data/vchan/2/neg/claim",
	            NULL);
	ck_assert_ptr_nonnull(v);
	ck_assert_str_eq(v, "");
	free(v);
	/* Another domain may not read the advertisement. */
	xs_close(xs);
	set_domain(3);
	xs = xs_open(0);
	ck_assert_ptr_nonnull(xs);
	ck_assert_ptr_null(xs_read(xs, XBT_NULL, ad, NULL));
	ck_assert_int_eq(errno, EACCES);
	xs_close(xs);
	set_domain(2);

	conduit_ctx *ctx = fk_new_ctx();
	conduit_flow *f = NULL;
	ck_status(
	    conduit_connect_wait(&f, ctx, "vchan://1/neg", cd_scaled(20000)),
	    CONDUIT_OK);
	ck_status(conduit_write_all(f, "hello", 5, NULL, cd_scaled(5000)),
	          CONDUIT_OK);
	ck_status(conduit_shutdown(f, CONDUIT_SHUT_WR), CONDUIT_OK);
	char b[8];
	size_t n = 0, got = 0;
	int rc;
	while ((rc = conduit_read_wait(f, b + got, sizeof(b) - got, &n,
	                               cd_scaled(10000))) == CONDUIT_OK)
		got += n;
	ck_status(rc, CONDUIT_EOF);
	ck_assert(got == 4 && memcmp(b, "done", 4) == 0);
	conduit_flow_free(f);
	conduit_ctx_free(ctx);
	ck_assert_int_eq(cd_wait_peer(pid, cd_scaled(20000)), 0);
	host_teardown(true);
}
END_TEST

/*
 * A listener that went away without closing (killed, or _exit) leaves
 * its armed ring's keys in XenStore, naming an event port that is gone.
 * A client that finds them keeps waiting for a live ring until its
 * deadline, and connects to the next listener of that path.
 */
START_TEST(stale_ring_keys_then_new_listener)
{
	host_setup();
	pid_t gone = cd_fork_peer();
	if (gone == 0) {
		set_domain(1);
		conduit_ctx *sctx;
		conduit_listener *l;
		if (conduit_ctx_new(&sctx) != CONDUIT_OK ||
		    conduit_listen(&l, sctx, "vchan://2/stale") != CONDUIT_OK)
			_exit(1);
		_exit(0); /* without freeing: the keys stay */
	}
	ck_assert_int_eq(cd_wait_peer(gone, cd_scaled(10000)), 0);
	conduit_ctx *ctx = fk_new_ctx();
	conduit_ctx_set_connect_timeout(ctx, cd_scaled(20000));
	conduit_flow *f = NULL;
	ck_status(conduit_connect(&f, ctx, "vchan://1/stale"), CONDUIT_OK);
	uint64_t t0 = cd_now_ms();
	int rc;
	while ((rc = conduit_handshake(f)) != CONDUIT_OK &&
	       cd_now_ms() - t0 < 300) {
		ck_assert_msg(fk_is_want(rc), "on stale keys: %s",
		              conduit_flow_error(f));
		struct conduit_pollitem it = {.flow = f,
		                              .events = CONDUIT_POLLOUT};
		size_t n;
		ck_status(conduit_poll(ctx, &it, 1, 100, &n), CONDUIT_OK);
	}
	ck_assert_msg(rc != CONDUIT_OK, "connected to a listener that is gone");
	pid_t pid = spawn_echo(1, "vchan://2/stale", 1);
	int r = fk_pump_echo(ctx, f, 4, 200000, cd_scaled(20000));
	ck_assert_msg(r == 0, "echo failed at step %d: %s", r,
	              conduit_flow_error(f));
	conduit_flow_free(f);
	conduit_ctx_free(ctx);
	ck_assert_int_eq(cd_wait_peer(pid, cd_scaled(20000)), 0);
	host_teardown(false);
}
END_TEST

/* ------------------------------------------------------------------ */
/* XenStore watches                                                     */

/* The next event of a watch, waited for up to ms on its descriptor:
 * "path token" in a static buffer, or "" when none came. */
static const char *next_event(struct xs_handle *xs, int ms)
{
	static char out[512];
	struct pollfd p = {xs_fileno(xs), POLLIN, 0};
	char **ev = xs_check_watch(xs);
	if (ev == NULL && errno == EAGAIN && poll(&p, 1, ms) == 1)
		ev = xs_check_watch(xs);
	if (ev == NULL)
		return "";
	snprintf(out, sizeof(out), "%s %s", ev[XS_WATCH_PATH],
	         ev[XS_WATCH_TOKEN]);
	free(ev);
	return out;
}

/*
 * The emulation's watches behave as xenstored's: one event at
 * registration; then one for each write or removal at or under the
 * watched path, from any process, told through xs_fileno() and taken by
 * xs_check_watch() without blocking; relative watches get relative
 * paths; a removal above a watch fires it with its own path; a domain
 * hears only of nodes it may read.
 */
START_TEST(xenstore_watches_emulated)
{
	host_setup();
	struct xs_handle *xs = xs_open(0); /* domain 2 */
	ck_assert_ptr_nonnull(xs);
	ck_assert_int_ge(xs_fileno(xs), 0);
	ck_assert(xs_watch(xs, "/local/domain/2/data/w", "abs"));
	ck_assert_str_eq(next_event(xs, 0), "/local/domain/2/data/w abs");
	ck_assert_str_eq(next_event(xs, 0), "");
	ck_assert_int_eq(errno, EAGAIN);
	ck_assert(xs_watch(xs, "data/rel", "rel"));
	ck_assert_str_eq(next_event(xs, 0), "data/rel rel");

	/* A write from another process, and one beside the path. */
	pid_t pid = cd_fork_peer();
	if (pid == 0) {
		struct xs_handle *o = xs_open(0);
		bool ok =
		    o != NULL &&
		    xs_write(o, XBT_NULL, "/local/domain/2/data/wx", "1", 1) &&
		    xs_write(o, XBT_NULL, "/local/domain/2/data/w/k", "v", 1);
		xs_close(o);
		_exit(ok ? 0 : 1);
	}
	ck_assert_int_eq(cd_wait_peer(pid, cd_scaled(10000)), 0);
	ck_assert_str_eq(next_event(xs, cd_scaled(2000)),
	                 "/local/domain/2/data/w/k abs");
	ck_assert_str_eq(next_event(xs, 50), "");
	ck_assert(xs_write(xs, XBT_NULL, "data/rel", "x", 1));
	ck_assert_str_eq(next_event(xs, cd_scaled(2000)), "data/rel rel");

	/* Domain 3 watches the same node, which it may not read. */
	set_domain(3);
	struct xs_handle *other = xs_open(0);
	ck_assert_ptr_nonnull(other);
	ck_assert(xs_watch(other, "/local/domain/2/data/w", "other"));
	ck_assert_str_eq(next_event(other, 0), "/local/domain/2/data/w other");
	set_domain(2);
	ck_assert(xs_write(xs, XBT_NULL, "/local/domain/2/data/w/k", "2", 1));
	ck_assert_str_eq(next_event(xs, cd_scaled(2000)),
	                 "/local/domain/2/data/w/k abs");
	ck_assert_str_eq(next_event(other, 50), "");

	/* Removing the parent fires the watches below it, each with its
	 * own path (domain 3's included: a removal is told to all). */
	ck_assert(xs_rm(xs, XBT_NULL, "/local/domain/2/data"));
	const char *a = next_event(xs, cd_scaled(2000));
	char first[512];
	snprintf(first, sizeof(first), "%s", a);
	const char *b = next_event(xs, cd_scaled(2000));
	ck_assert_msg((strcmp(first, "/local/domain/2/data/w abs") == 0 &&
	               strcmp(b, "data/rel rel") == 0) ||
	                  (strcmp(b, "/local/domain/2/data/w abs") == 0 &&
	                   strcmp(first, "data/rel rel") == 0),
	              "events: \"%s\", \"%s\"", first, b);
	ck_assert_str_eq(next_event(other, cd_scaled(2000)),
	                 "/local/domain/2/data/w other");

	/* xs_read_watch blocks until an event, and unwatching stops them. */
	ck_assert(xs_write(xs, XBT_NULL, "/local/domain/2/data/w", "3", 1));
	unsigned num = 0;
	char **ev = xs_read_watch(xs, &num);
	ck_assert_ptr_nonnull(ev);
	ck_assert_uint_eq(num, 2);
	ck_assert_str_eq(ev[XS_WATCH_TOKEN], "abs");
	free(ev);
	ck_assert(xs_unwatch(xs, "/local/domain/2/data/w", "abs"));
	ck_assert(xs_write(xs, XBT_NULL, "/local/domain/2/data/w", "4", 1));
	ck_assert_str_eq(next_event(xs, 50), "");
	xs_close(other);
	xs_close(xs);
	host_teardown(true);
}
END_TEST

/* A handle that watches cannot start a transaction (real libxenstore's
 * reader thread: on Xen 4.17 the start failed with EINVAL and the handle
 * was closed); one without a watch can, beside it.  The vchan backend
 * therefore watches on a handle of its own: a client connects while its
 * watch is set. */
START_TEST(xenstore_watching_handle_has_no_transactions)
{
	host_setup();
	struct xs_handle *w = xs_open(0);
	struct xs_handle *xs = xs_open(0);
	ck_assert_ptr_nonnull(w);
	ck_assert_ptr_nonnull(xs);
	ck_assert(xs_watch(w, "/local/domain/2/data/t", "t"));
	errno = 0;
	ck_assert_uint_eq(xs_transaction_start(w), XBT_NULL);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_uint_eq(xs_transaction_start(w), XBT_NULL);
	ck_assert_int_eq(errno, EBADF);
	xs_transaction_t t = xs_transaction_start(xs);
	ck_assert_uint_ne(t, XBT_NULL);
	ck_assert(xs_write(xs, t, "/local/domain/2/data/t/k", "v", 1));
	ck_assert(xs_transaction_end(xs, t, false));
	xs_close(xs);
	xs_close(w);
	host_teardown(true);
}
END_TEST

/*
 * Connecting and listening sleep on XenStore watches, not on a timer: a
 * client waiting for a ring is given a descriptor and a slow backstop
 * deadline (500 ms, not the 5 ms of polling), a named listener a descriptor and
 * no deadline at all; the ring appearing, or a client announcing itself, wakes
 * them.
 */
START_TEST(connect_and_listen_sleep_on_watches)
{
	host_setup();
	int go[2];
	ck_assert(pipe(go) == 0);
	pid_t pid = cd_fork_peer();
	if (pid == 0) {
		close(go[1]);
		set_domain(1);
		conduit_ctx *sctx;
		conduit_listener *l;
		conduit_flow *f;
		if (pipe_wait(go[0], 20000) != 0 ||
		    conduit_ctx_new(&sctx) != CONDUIT_OK ||
		    conduit_listen(&l, sctx, "vchan://2/late") != CONDUIT_OK ||
		    conduit_accept_wait(&f, l, 20000) != CONDUIT_OK ||
		    fk_echo_blocking(f, 20000) != 0)
			_exit(1);
		fk_free_all(NULL, f, l, sctx);
		_exit(0);
	}
	close(go[0]);
	conduit_ctx *ctx = fk_new_ctx();
	conduit_ctx_set_connect_timeout(ctx, 20000);
	conduit_flow *f = NULL;
	ck_status(conduit_connect(&f, ctx, "vchan://1/late"), CONDUIT_OK);
	ck_assert(fk_is_want(conduit_handshake(f)));
	struct conduit_pollitem it = {.flow = f, .events = CONDUIT_POLLOUT};
	struct pollfd fds[4];
	size_t nfds = 0;
	int tmo = 0;
	ck_status(conduit_wait_fds(ctx, &it, 1, fds, 4, &nfds, &tmo),
	          CONDUIT_OK);
	ck_assert_uint_ge(nfds, 1);
	/* Not a polling timer: at most the slow backstop look. */
	ck_assert_msg(tmo >= 400, "a client waiting for a ring wakes in %d ms",
	              tmo);
	ck_assert_int_eq(poll(fds, nfds, 0), 0);
	ck_assert_int_eq(pipe_say(go[1]), 0);
	/* The listener's ring wakes the client's descriptor. */
	uint64_t t0 = cd_now_ms();
	ck_assert_msg(poll(fds, nfds, cd_scaled(10000)) >= 1,
	              "no wake-up when the ring appeared");
	ck_assert_msg(cd_now_ms() - t0 < (uint64_t)cd_scaled(10000),
	              "woke late");
	int r = fk_pump_echo(ctx, f, 5, 100000, cd_scaled(20000));
	ck_assert_msg(r == 0, "echo failed at step %d: %s", r,
	              conduit_flow_error(f));
	conduit_flow_free(f);
	ck_assert_int_eq(cd_wait_peer(pid, cd_scaled(20000)), 0);

	/* A named listener: no deadline; an announcement wakes it. */
	conduit_listener *l = NULL;
	ck_status(conduit_listen(&l, ctx, "vchan://named2/p"), CONDUIT_OK);
	struct conduit_pollitem li = {.listener = l, .events = CONDUIT_POLLIN};
	nfds = 0;
	ck_status(conduit_wait_fds(ctx, &li, 1, fds, 4, &nfds, &tmo),
	          CONDUIT_OK);
	ck_assert_uint_ge(nfds, 1);
	ck_assert_msg(tmo < 0, "an idle named listener wakes in %d ms", tmo);
	ck_assert_int_eq(poll(fds, nfds, 0), 0);
	pid = cd_fork_peer();
	if (pid == 0) {
		set_domain(1);
		conduit_ctx *cctx;
		if (conduit_ctx_new(&cctx) != CONDUIT_OK)
			_exit(1);
		fk_echo_client(cctx, "vchan://named2/p", 6, 1000, 20000);
		conduit_ctx_free(cctx);
		_exit(0);
	}
	ck_assert_msg(poll(fds, nfds, cd_scaled(10000)) >= 1,
	              "no wake-up when a client announced itself");
	conduit_flow *s = NULL;
	ck_status(conduit_accept_wait(&s, l, cd_scaled(20000)), CONDUIT_OK);
	ck_assert_int_eq(fk_echo_blocking(s, cd_scaled(20000)), 0);
	conduit_flow_free(s);
	ck_assert_int_eq(cd_wait_peer(pid, cd_scaled(20000)), 0);
	conduit_listener_free(l);
	conduit_ctx_free(ctx);
	close(go[1]);
	host_teardown(true);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Xen's own vchan-socket-proxy, over the emulation                     */

/*
 * The program from Debian's xen-utils-4.17, fetched into the build tree
 * (apt-get download and dpkg -x, nothing installed) the first time.
 * Without it the test fails, saying how to get it: never a silent skip.
 */
static const char *socket_proxy(void)
{
	static char path[512];
	snprintf(path, sizeof(path),
	         "%s/root/usr/lib/xen-4.17/bin/vchan-socket-proxy",
	         XEN_UTILS_DIR);
	if (access(path, X_OK) == 0)
		return path;
	char cmd[2048];
	snprintf(cmd, sizeof(cmd),
	         "mkdir -p '%s' && cd '%s' && "
	         "apt-get download xen-utils-4.17 >download.log 2>&1 && "
	         "dpkg -x \"$(ls xen-utils-4.17_*.deb | head -n 1)\" root "
	         ">>download.log 2>&1",
	         XEN_UTILS_DIR, XEN_UTILS_DIR);
	int rc = system(cmd);
	ck_assert_msg(rc == 0 && access(path, X_OK) == 0,
	              "vchan-socket-proxy is needed and could not be fetched: "
	              "`apt-get download xen-utils-4.17` and `dpkg -x` in %s "
	              "failed (see download.log there); this test needs the "
	              "Debian archive (network or a local mirror)",
	              XEN_UTILS_DIR);
	return path;
}

struct proxy {
	pid_t pid;
	int in, out; /* its standard input (ours to write), output */
};

/* vchan-socket-proxy as domain dom, passing its standard input and output
 * to the vchan ("-"). */
static struct proxy spawn_proxy(unsigned dom, const char *mode, unsigned peer,
                                const char *path)
{
	const char *prog = socket_proxy();
	int in[2], out[2];
	ck_assert(pipe(in) == 0 && pipe(out) == 0);
	struct proxy p = {cd_fork_peer(), in[1], out[0]};
	if (p.pid == 0) {
		set_domain(dom);
		if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0)
			_exit(126);
		close(in[0]);
		close(in[1]);
		close(out[0]);
		close(out[1]);
		char d[16];
		snprintf(d, sizeof(d), "%u", peer);
		execl(prog, prog, "-m", mode, d, path, "-", (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	return p;
}

/* Read len bytes from fd within ms. */
static int read_fd_all(int fd, char *buf, size_t len, int ms)
{
	size_t got = 0;
	uint64_t end = cd_now_ms() + (uint64_t)ms;
	while (got < len && cd_now_ms() < end) {
		struct pollfd p = {fd, POLLIN, 0};
		if (poll(&p, 1, 100) != 1)
			continue;
		ssize_t r = read(fd, buf + got, len - got);
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return got == len ? 0 : -1;
}

/* Both ways through the proxy, then the proxy's input ends: it closes
 * the vchan, which conduit reads as the end of the stream. */
static void proxy_exchange(conduit_flow *f, struct proxy *p)
{
	static const char a[] = "bytes from the proxy's input\n";
	static const char b[] = "bytes from conduit\n";
	ck_assert_int_eq(write(p->in, a, sizeof(a) - 1),
	                 (ssize_t)sizeof(a) - 1);
	char buf[64];
	size_t got = 0, n = 0;
	while (got < sizeof(a) - 1) {
		ck_status(conduit_read_wait(f, buf + got, sizeof(buf) - got, &n,
		                            cd_scaled(10000)),
		          CONDUIT_OK);
		got += n;
	}
	ck_assert(got == sizeof(a) - 1 && memcmp(buf, a, got) == 0);
	ck_status(conduit_write_all(f, b, sizeof(b) - 1, NULL, cd_scaled(5000)),
	          CONDUIT_OK);
	ck_assert_msg(
	    read_fd_all(p->out, buf, sizeof(b) - 1, cd_scaled(10000)) == 0 &&
	        memcmp(buf, b, sizeof(b) - 1) == 0,
	    "the proxy did not pass conduit's bytes on");
}

/*
 * The emulated libxenctrl lists the domains that exist: domain 0 always,
 * another while a process playing it runs (one that has opened
 * XenStore).  As Xen does, it answers with the first existing domain
 * from the one asked for.  Only its three calls are used, through dlsym
 * (xenctrl.h is not C11).
 */
START_TEST(emulated_domain_list)
{
	host_setup();
	void *lib = dlopen("libxenctrl.so.4.17", RTLD_NOW);
	ck_assert_msg(lib != NULL, "dlopen: %s", dlerror());
	void *(*open_)(void *, void *, unsigned) =
	    (void *(*)(void *, void *, unsigned))dlsym(lib,
	                                               "xc_interface_open");
	int (*info)(void *, uint32_t, unsigned, void *) = (int (*)(
	    void *, uint32_t, unsigned, void *))dlsym(lib, "xc_domain_getinfo");
	int (*close_)(void *) =
	    (int (*)(void *))dlsym(lib, "xc_interface_close");
	ck_assert(open_ != NULL && info != NULL && close_ != NULL);
	void *xc = open_(NULL, NULL, 0);
	ck_assert_ptr_nonnull(xc);
	/* Room for one entry, whatever its size; domid comes first. */
	static uint32_t di[1024];
	ck_assert_int_eq(info(xc, 0, 1, di), 1);
	ck_assert_uint_eq(di[0], 0);
	ck_assert_int_eq(info(xc, 1, 1, di), 0);
	int go[2];
	ck_assert(pipe(go) == 0);
	pid_t pid = cd_fork_peer();
	if (pid == 0) {
		close(go[1]);
		set_domain(7);
		struct xs_handle *xs = xs_open(0);
		pipe_wait(go[0], 20000);
		xs_close(xs);
		_exit(xs != NULL ? 0 : 1);
	}
	close(go[0]);
	uint64_t end = cd_now_ms() + (uint64_t)cd_scaled(5000);
	int n = 0;
	while ((n = info(xc, 1, 1, di)) == 0 && cd_now_ms() < end)
		nap_ms(5);
	ck_assert_int_eq(n, 1);
	ck_assert_uint_eq(di[0], 7);
	ck_assert_int_eq(pipe_say(go[1]), 0);
	ck_assert_int_eq(cd_wait_peer(pid, cd_scaled(10000)), 0);
	ck_assert_int_eq(info(xc, 1, 1, di), 0);
	close(go[1]);
	close_(xc);
	dlclose(lib);
	host_teardown(true);
}
END_TEST

START_TEST(socket_proxy_server_conduit_client)
{
	host_setup();
	struct proxy p =
	    spawn_proxy(1, "server", 2, "/local/domain/1/data/vchan/2/proxy");
	conduit_ctx *ctx = fk_new_ctx();
	conduit_flow *f = NULL;
	ck_status(
	    conduit_connect_wait(&f, ctx, "vchan://1/proxy", cd_scaled(20000)),
	    CONDUIT_OK);
	proxy_exchange(f, &p);
	close(p.in);
	char c;
	size_t n = 0;
	ck_status(conduit_read_wait(f, &c, 1, &n, cd_scaled(10000)),
	          CONDUIT_EOF);
	conduit_flow_free(f);
	conduit_ctx_free(ctx);
	close(p.out);
	ck_assert_int_eq(cd_wait_peer(p.pid, cd_scaled(10000)), 0);
	host_teardown(true);
}
END_TEST

/* The proxy as client waits for the ring with a watch, and asks the
 * emulated libxenctrl whether the server's domain still exists. */
START_TEST(socket_proxy_client_conduit_server)
{
	host_setup();
	conduit_ctx *ctx = fk_new_ctx();
	conduit_listener *l = NULL;
	struct proxy p =
	    spawn_proxy(1, "client", 2, "/local/domain/2/data/vchan/1/proxyc");
	/* The proxy is waiting before the ring exists. */
	nap_ms(200);
	ck_status(conduit_listen(&l, ctx, "vchan://1/proxyc"), CONDUIT_OK);
	conduit_flow *f = NULL;
	ck_status(conduit_accept_wait(&f, l, cd_scaled(20000)), CONDUIT_OK);
	proxy_exchange(f, &p);
	/* Closing ends the proxy's connection, and the proxy. */
	ck_status(conduit_close_wait(f, cd_scaled(5000)), CONDUIT_OK);
	conduit_flow_free(f);
	char c;
	ck_assert_msg(read(p.out, &c, 1) == 0,
	              "the proxy's output goes on after conduit closed");
	int st = cd_wait_peer(p.pid, cd_scaled(10000));
	ck_assert_msg(st == 0, "vchan-socket-proxy exit status %d", st);
	close(p.in);
	close(p.out);
	conduit_listener_free(l);
	conduit_ctx_free(ctx);
	host_teardown(true);
}
END_TEST

#ifdef CONDUIT_HAVE_TLS
/* A self-signed certificate for "logger" in the host directory. */
static void make_cert(void)
{
	ck_assert_msg(system("command -v openssl >/dev/null 2>&1") == 0,
	              "the openssl command is missing: run tools/setup");
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
	         "cd '%s' && openssl req -x509 -newkey ec -pkeyopt "
	         "ec_paramgen_curve:P-256 -nodes -subj /CN=logger -addext "
	         "subjectAltName=DNS:logger -days 2 -keyout srv.key -out "
	         "srv.crt >openssl.log 2>&1",
	         host_dir);
	ck_assert_msg(system(cmd) == 0,
	              "openssl could not make a certificate in %s", host_dir);
}

static const char *in_host(const char *name)
{
	static char bufs[4][400];
	static int next;
	char *b = bufs[next++ % 4];
	snprintf(b, sizeof(bufs[0]), "%s/%s", host_dir, name);
	return b;
}

/*
 * A TLS handshake over vchan sleeps while the peer owes it an answer and
 * wakes when the answer is written.  The client waits as an application
 * finishing a connect does (CONDUIT_POLLOUT), with room to write in the
 * ring below it: that room is no progress for a handshake that waits for
 * the server's flight, and a conduit_poll() that said "ready" returned at
 * once, round after round, for the whole handshake.  The server is held
 * until told, so "not ready" is checked without timing anything; the
 * rest of the handshake then needs a handful of wake-ups, not thousands.
 */
START_TEST(tls_handshake_waits_for_the_peer)
{
	host_setup();
	make_cert();
	int go[2], done[2];
	ck_assert(pipe(go) == 0 && pipe(done) == 0);
	const char *crt = in_host("srv.crt"), *key = in_host("srv.key");
	pid_t pid = cd_fork_peer();
	if (pid == 0) {
		set_domain(1);
		conduit_ctx *ctx;
		conduit_listener *l;
		conduit_flow *f;
		if (conduit_ctx_new(&ctx) != CONDUIT_OK ||
		    conduit_tls_set_cert_file(ctx, crt, key, NULL) !=
		        CONDUIT_OK ||
		    conduit_listen(&l, ctx,
		                   "tls+vchan://2/hs?read-ring=16384&"
		                   "write-ring=16384") != CONDUIT_OK ||
		    conduit_accept_wait(&f, l, 20000) != CONDUIT_OK)
			_exit(1);
		/* The ClientHello is in the ring before "go": one call
		 * answers it with the whole flight and then waits. */
		if (pipe_wait(go[0], 20000) != 0 ||
		    !fk_is_want(conduit_handshake(f)) || pipe_say(done[1]) != 0)
			_exit(2);
		char buf[8];
		size_t n = 0;
		if (conduit_read_wait(f, buf, 4, &n, 20000) != CONDUIT_OK ||
		    n != 4 || memcmp(buf, "ping", 4) != 0 ||
		    conduit_write_all(f, "pong", 4, NULL, 20000) !=
		        CONDUIT_OK ||
		    conduit_close_wait(f, 20000) != CONDUIT_OK)
			_exit(3);
		fk_free_all(NULL, f, l, ctx);
		_exit(0);
	}
	close(go[0]);
	close(done[1]);
	conduit_ctx *ctx = fk_new_ctx();
	ck_status(conduit_tls_set_ca_file(ctx, crt), CONDUIT_OK);
	conduit_flow *f = NULL;
	ck_status(
	    conduit_connect(&f, ctx, "tls+vchan://1/hs?servername=logger"),
	    CONDUIT_OK);
	struct conduit_pollitem it = {.flow = f, .events = CONDUIT_POLLOUT};
	size_t n = 0;
	int rc = CONDUIT_WANT_WRITE;
	/* Until the ring is up: the same call then sends the ClientHello. */
	for (int i = 0; i < 4000 && conduit_flow_fd(f) < 0; i++) {
		rc = conduit_handshake(f);
		ck_assert_msg(fk_is_want(rc), "handshake: %s",
		              conduit_flow_error(f));
		if (conduit_flow_fd(f) < 0)
			ck_status(conduit_poll(ctx, &it, 1, 100, &n),
			          CONDUIT_OK);
	}
	ck_assert_int_ge(conduit_flow_fd(f), 0);
	ck_status(rc, CONDUIT_WANT_READ);

	/* The server has not answered: nothing is ready, and a program
	 * with its own loop is told to sleep. */
	ck_status(conduit_poll(ctx, &it, 1, 0, &n), CONDUIT_OK);
	ck_assert_msg(n == 0, "conduit_poll() says the handshake can go on "
	                      "while it waits for the server");
	struct pollfd fds[4];
	size_t nfds = 0;
	int tmo = 0;
	ck_status(conduit_wait_fds(ctx, &it, 1, fds, 4, &nfds, &tmo),
	          CONDUIT_OK);
	ck_assert_uint_ge(nfds, 1); /* the flow's first */
	ck_assert_int_ne(tmo, 0);

	ck_assert_int_eq(pipe_say(go[1]), 0);
	ck_assert_int_eq(pipe_wait(done[0], cd_scaled(20000)), 0);
	/* The server's flight is written: the descriptor is readable and
	 * the handshake can go on. */
	ck_assert_msg(poll(fds, 1, 0) == 1 && (fds[0].revents & POLLIN),
	              "the server's flight did not make the event "
	              "descriptor readable");
	ck_status(conduit_poll(ctx, &it, 1, 0, &n), CONDUIT_OK);
	ck_assert_uint_eq(n, 1);

	int polls = 0;
	for (;;) {
		rc = conduit_handshake(f);
		if (!fk_is_want(rc))
			break;
		ck_assert_msg(++polls <= 50,
		              "%d conduit_poll() calls and the handshake is "
		              "still not done",
		              polls);
		ck_status(conduit_poll(ctx, &it, 1, cd_scaled(5000), &n),
		          CONDUIT_OK);
		ck_assert_msg(n == 1, "no progress for %d ms", cd_scaled(5000));
	}
	ck_assert_msg(rc == CONDUIT_OK, "handshake: %s", conduit_flow_error(f));
	ck_status(conduit_write_all(f, "ping", 4, NULL, cd_scaled(5000)),
	          CONDUIT_OK);
	char buf[8];
	ck_status(conduit_read_wait(f, buf, 4, &n, cd_scaled(5000)),
	          CONDUIT_OK);
	ck_assert(n == 4 && memcmp(buf, "pong", 4) == 0);
	ck_status(conduit_close_wait(f, cd_scaled(5000)), CONDUIT_OK);
	conduit_flow_free(f);
	conduit_ctx_free(ctx);
	close(go[1]);
	close(done[0]);
	ck_assert_int_eq(cd_wait_peer(pid, cd_scaled(20000)), 0);
	host_teardown(true);
}
END_TEST

/* A vchan host is a domain: a verifying client needs servername=, and
 * the refusal says so. */
START_TEST(tls_without_servername_refused)
{
	host_setup();
	conduit_ctx *ctx = fk_new_ctx();
	conduit_flow *f = NULL;
	ck_status(conduit_connect(&f, ctx, "tls+vchan://1/https"),
	          CONDUIT_ERR_TLS);
	ck_assert_ptr_null(f);
	const char *m = conduit_ctx_error(ctx);
	ck_assert_msg(strstr(m, "vchan host \"1\" names a domain") != NULL &&
	                  strstr(m, "servername=NAME") != NULL,
	              "message: %s", m);
	conduit_ctx_free(ctx);
	host_teardown(true);
}
END_TEST
#endif

int main(void)
{
	const struct cd_test tests[] = {
	    CD_TEST(emulation_is_loaded, 0),
	    CD_TEST(echo_in_page_ring, 20),
	    CD_TEST(bulk_64mib_in_page_ring, 120),
	    CD_TEST(bulk_64mib_multi_page_ring, 60),
	    CD_TEST(successive_connections, 60),
	    CD_TEST(named_server_and_lookup, 30),
	    CD_TEST(hostile_domain_refused, 0),
	    CD_TEST(long_paths_refused, 0),
	    CD_TEST(no_server_refused, 0),
	    CD_TEST(peer_killed_mid_transfer, 30),
	    CD_TEST(malicious_ring_indexes, 30),
	    CD_TEST(resolver_rule_xen_suffix, 30),
	    CD_TEST(peer_write_wakes_waiter, 30),
	    CD_TEST(server_notify_before_its_first_wait, 10),
	    CD_TEST(blocked_writer_after_peer_eof_sleeps, 30),
	    CD_TEST(abortive_cycles_no_spurious_reset, 120),
	    CD_TEST(plain_server_conduit_client, 60),
	    CD_TEST(plain_client_conduit_server, 60),
	    CD_TEST(conduit_ends_negotiate_framing, 30),
	    CD_TEST(stale_ring_keys_then_new_listener, 30),
	    CD_TEST(xenstore_watches_emulated, 30),
	    CD_TEST(xenstore_watching_handle_has_no_transactions, 30),
	    CD_TEST(connect_and_listen_sleep_on_watches, 60),
	    CD_TEST(emulated_domain_list, 30),
	    CD_TEST(socket_proxy_server_conduit_client, 120),
	    CD_TEST(socket_proxy_client_conduit_server, 120),
#ifdef CONDUIT_HAVE_TLS
	    CD_TEST(tls_handshake_waits_for_the_peer, 30),
	    CD_TEST(tls_without_servername_refused, 0),
#endif
	};
	return cd_run(
	    cd_suite("vchan", tests, sizeof(tests) / sizeof(tests[0])));
}
