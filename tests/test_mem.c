/*
 * test_mem.c - what the in-memory flow adds to the contract (which
 * test_contract checks on it): conduit_mem_pair()'s arguments and limits,
 * the backend's registration and names, the bounded buffers, max_io,
 * failure injection, StartTLS's refusal over unread bytes, and StartTLS
 * over a mem pair.
 */
#include "flowkit.h"
#include "harness.h"

#include <conduit/backend.h>
#include <conduit/conduit.h>
#include <conduit/mem.h>
#ifdef CONDUIT_HAVE_TLS
#include <conduit/tls.h>
#endif

#include <string.h>

START_TEST(pair_arguments)
{
	conduit_ctx *ctx = fk_new_ctx();
	conduit_flow *a = (conduit_flow *)1, *b = (conduit_flow *)1;
	ck_status(conduit_mem_pair(&a, &b, NULL, NULL), CONDUIT_ERR_INVALID);
	ck_assert_ptr_null(a);
	ck_assert_ptr_null(b);
	ck_status(conduit_mem_pair(NULL, &b, ctx, NULL), CONDUIT_ERR_INVALID);
	ck_assert_str_eq(conduit_ctx_error(ctx),
	                 "mem pair: no place for the first flow");
	ck_status(conduit_mem_pair(&a, NULL, ctx, NULL), CONDUIT_ERR_INVALID);
	ck_assert_ptr_null(a);
	ck_assert_str_eq(conduit_ctx_error(ctx),
	                 "mem pair: no place for the second flow");
	struct conduit_mem_config big = {.capacity =
	                                     CONDUIT_MEM_MAX_CAPACITY + 1u};
	ck_status(conduit_mem_pair(&a, &b, ctx, &big), CONDUIT_ERR_INVALID);
	ck_assert_ptr_null(a);
	ck_assert_ptr_null(b);
	ck_assert_msg(strstr(conduit_ctx_error(ctx), "capacity 1073741825") !=
	                  NULL,
	              "message: %s", conduit_ctx_error(ctx));
	conduit_ctx_free(ctx);
}
END_TEST

/* A context with no room for another backend: the registration's
 * failure is the pair's, with its message. */
START_TEST(no_room_to_register)
{
	static struct conduit_backend fill[32];
	conduit_ctx *ctx = fk_new_ctx();
	int rc = CONDUIT_OK;
	for (size_t i = 0; i < 32 && rc == CONDUIT_OK; i++) {
		fill[i].name = "filler";
		rc = conduit_ctx_register(ctx, &fill[i], NULL);
	}
	ck_status(rc, CONDUIT_ERR_INVALID);
	conduit_flow *a, *b;
	ck_status(conduit_mem_pair(&a, &b, ctx, NULL), CONDUIT_ERR_INVALID);
	ck_assert_ptr_null(a);
	ck_assert_msg(strstr(conduit_ctx_error(ctx), "register mem: too many "
	                                             "backends") != NULL,
	              "message: %s", conduit_ctx_error(ctx));
	conduit_ctx_free(ctx);
}
END_TEST

/* The first pair registers the backend, once; the flows are named after
 * their pair; they have no descriptor and no credentials. */
START_TEST(registration_and_names)
{
	conduit_ctx *ctx = fk_new_ctx();
	size_t before = conduit_ctx_backend_count(ctx);
	conduit_flow *a, *b, *c, *d;
	ck_status(conduit_mem_pair(&a, &b, ctx, NULL), CONDUIT_OK);
	ck_status(conduit_mem_pair(&c, &d, ctx, NULL), CONDUIT_OK);
	ck_assert_uint_eq(conduit_ctx_backend_count(ctx), before + 1);
	ck_assert_str_eq(conduit_ctx_backend_name(ctx, before), "mem");
	ck_assert_str_eq(conduit_flow_uri(a), "mem://1/a");
	ck_assert_str_eq(conduit_flow_uri(b), "mem://1/b");
	ck_assert_str_eq(conduit_flow_uri(c), "mem://2/a");
	ck_assert_int_eq(conduit_flow_fd(a), -1);
	struct conduit_peer_cred cred;
	ck_status(conduit_flow_peer_cred(a, &cred), CONDUIT_ERR_UNSUPPORTED);
	/* Pairs are independent. */
	size_t n;
	ck_status(conduit_write(a, "1", 1, &n), CONDUIT_OK);
	ck_status(conduit_write(c, "2", 1, &n), CONDUIT_OK);
	char x;
	ck_status(conduit_read(d, &x, 1, &n), CONDUIT_OK);
	ck_assert_int_eq(x, '2');
	ck_status(conduit_read(b, &x, 1, &n), CONDUIT_OK);
	ck_assert_int_eq(x, '1');
	fk_free_all(a, b, NULL, NULL);
	fk_free_all(d, c, NULL, ctx);
}
END_TEST

/* A direction holds capacity bytes: a write takes what fits, then
 * wants; a read makes room, which poll reports at once. */
START_TEST(bounded_capacity)
{
	conduit_ctx *ctx = fk_new_ctx();
	conduit_flow *a, *b;
	struct conduit_mem_config cfg = {.capacity = 10};
	ck_status(conduit_mem_pair(&a, &b, ctx, &cfg), CONDUIT_OK);
	char buf[32];
	cd_pattern(3, 0, buf, sizeof(buf));
	size_t n = 0;
	ck_status(conduit_write(a, buf, 25, &n), CONDUIT_OK);
	ck_assert_uint_eq(n, 10);
	ck_status(conduit_write(a, buf + 10, 15, &n), CONDUIT_WANT_WRITE);
	ck_assert_uint_eq(n, 0);
	struct conduit_pollitem it = {.flow = a, .events = CONDUIT_POLLOUT};
	size_t nready = 9;
	ck_status(conduit_poll(ctx, &it, 1, 0, &nready), CONDUIT_OK);
	ck_assert_uint_eq(nready, 0);
	char got[32];
	ck_status(conduit_read(b, got, 4, &n), CONDUIT_OK);
	ck_assert_uint_eq(n, 4);
	ck_status(conduit_poll(ctx, &it, 1, 0, &nready), CONDUIT_OK);
	ck_assert_uint_eq(nready, 1);
	ck_assert_uint_eq(it.revents, CONDUIT_POLLOUT);
	/* The ring wraps: 4 more fit, and all 14 come out in order. */
	ck_status(conduit_write(a, buf + 10, 15, &n), CONDUIT_OK);
	ck_assert_uint_eq(n, 4);
	ck_status(conduit_read(b, got + 4, sizeof(got) - 4, &n), CONDUIT_OK);
	ck_assert_uint_eq(n, 10);
	ck_assert_uint_eq(cd_pattern_check(3, 0, got, 14), 14);
	ck_status(conduit_read(b, got, sizeof(got), &n), CONDUIT_WANT_READ);
	fk_free_all(a, b, NULL, ctx);
}
END_TEST

/* max_io cuts every read and write: layers above see short ones. */
START_TEST(max_io_makes_short_reads_and_writes)
{
	conduit_ctx *ctx = fk_new_ctx();
	conduit_flow *a, *b;
	struct conduit_mem_config cfg = {.max_io = 3};
	ck_status(conduit_mem_pair(&a, &b, ctx, &cfg), CONDUIT_OK);
	size_t n = 0;
	ck_status(conduit_write(a, "abcdef", 6, &n), CONDUIT_OK);
	ck_assert_uint_eq(n, 3);
	ck_status(conduit_write(a, "def", 3, &n), CONDUIT_OK);
	char got[8];
	ck_status(conduit_read(b, got, sizeof(got), &n), CONDUIT_OK);
	ck_assert_uint_eq(n, 3);
	ck_status(conduit_read(b, got + 3, sizeof(got) - 3, &n), CONDUIT_OK);
	ck_assert_uint_eq(n, 3);
	ck_assert_mem_eq(got, "abcdef", 6);
	/* The blocking conveniences get there all the same. */
	ck_status(conduit_write_all(a, "0123456789", 10, &n, 1000), CONDUIT_OK);
	ck_assert_uint_eq(n, 10);
	ck_status(conduit_close_wait(a, 1000), CONDUIT_OK);
	size_t total = 0;
	int rc;
	while ((rc = conduit_read_wait(b, got, sizeof(got), &n, 1000)) ==
	       CONDUIT_OK) {
		ck_assert_uint_le(n, 3);
		total += n;
	}
	ck_status(rc, CONDUIT_EOF);
	ck_assert_uint_eq(total, 10);
	fk_free_all(a, b, NULL, ctx);
}
END_TEST

/* An injected failure: ready at once, reported by the next read, for
 * good; the peer reads what was delivered, then a reset. */
START_TEST(injected_failure)
{
	conduit_ctx *ctx = fk_new_ctx();
	conduit_flow *a, *b;
	ck_status(conduit_mem_pair(&a, &b, ctx, NULL), CONDUIT_OK);
	size_t n;
	ck_status(conduit_write(a, "xy", 2, &n), CONDUIT_OK);
	ck_status(conduit_mem_inject(a, CONDUIT_OK), CONDUIT_ERR_INVALID);
	ck_status(conduit_mem_inject(a, CONDUIT_WANT_READ),
	          CONDUIT_ERR_INVALID);
	ck_status(conduit_mem_inject(NULL, CONDUIT_ERR_RESET),
	          CONDUIT_ERR_INVALID);
	ck_status(conduit_mem_inject(a, CONDUIT_ERR_RESET), CONDUIT_OK);
	struct conduit_pollitem it = {.flow = a, .events = CONDUIT_POLLIN};
	size_t nready = 0;
	ck_status(conduit_poll(ctx, &it, 1, 0, &nready), CONDUIT_OK);
	ck_assert_uint_eq(nready, 1);
	char buf[4];
	ck_status(conduit_read(a, buf, sizeof(buf), &n), CONDUIT_ERR_RESET);
	ck_assert_str_eq(conduit_flow_error(a), "read mem://1/a: injected "
	                                        "failure");
	ck_status(conduit_write(a, "z", 1, &n), CONDUIT_ERR_RESET);
	conduit_flow_free(a);
	ck_status(conduit_read(b, buf, sizeof(buf), &n), CONDUIT_OK);
	ck_assert_uint_eq(n, 2);
	ck_status(conduit_read(b, buf, sizeof(buf), &n), CONDUIT_ERR_RESET);
	ck_assert_str_eq(conduit_flow_error(b),
	                 "read mem://1/b: the peer went away without closing");
#ifdef CONDUIT_HAVE_TCP
	/* Not a mem flow. */
	conduit_listener *l = fk_listen(ctx, "tcp://127.0.0.1:0");
	conduit_flow *c, *s;
	fk_pair(ctx, l, NULL, &c, &s);
	ck_status(conduit_mem_inject(c, CONDUIT_ERR_RESET),
	          CONDUIT_ERR_INVALID);
	fk_free_all(c, s, l, NULL);
#endif
	fk_free_all(b, NULL, NULL, ctx);
}
END_TEST

/* The peer's SHUT_RD drops what was buffered for it and refuses more. */
START_TEST(shut_rd_drops_and_refuses)
{
	conduit_ctx *ctx = fk_new_ctx();
	conduit_flow *a, *b;
	ck_status(conduit_mem_pair(&a, &b, ctx, NULL), CONDUIT_OK);
	size_t n;
	ck_status(conduit_write(a, "lost", 4, &n), CONDUIT_OK);
	ck_status(conduit_shutdown(b, CONDUIT_SHUT_RD), CONDUIT_OK);
	ck_status(conduit_write(a, "more", 4, &n), CONDUIT_ERR_CLOSED);
	ck_assert_str_eq(conduit_flow_error(a),
	                 "write mem://1/a: the peer has stopped reading");
	fk_free_all(a, b, NULL, ctx);
}
END_TEST

/* StartTLS asks the flow for unread bytes, and mem can tell. */
START_TEST(starttls_refused_over_unread_bytes)
{
	conduit_ctx *ctx = fk_new_ctx();
	conduit_flow *a, *b;
	ck_status(conduit_mem_pair(&a, &b, ctx, NULL), CONDUIT_OK);
	size_t n;
	ck_status(conduit_write(a, "EHLO", 4, &n), CONDUIT_OK);
	conduit_flow *f = b;
	int rc = conduit_starttls(&f, CONDUIT_ROLE_SERVER, NULL);
#ifdef CONDUIT_HAVE_TLS
	ck_status(rc, CONDUIT_ERR_STATE);
	ck_assert_msg(strstr(conduit_flow_error(b), "4 bytes of plaintext") !=
	                  NULL,
	              "message: %s", conduit_flow_error(b));
#else
	ck_status(rc, CONDUIT_ERR_NO_BACKEND);
#endif
	ck_assert_ptr_eq(f, b);
	fk_free_all(a, b, NULL, ctx);
}
END_TEST

#ifdef CONDUIT_HAVE_TLS
static struct cd_certs certs;

/*
 * StartTLS over an in-memory pair, in the natural order of a protocol:
 * both ends upgrade the flow they hold, the handshake runs through the
 * mem buffers (no descriptor, no socket), the name is verified, and bytes
 * then cross encrypted.
 */
START_TEST(starttls_over_mem)
{
	cd_certs_need(&certs);
	conduit_ctx *ctx = fk_new_ctx();
	ck_status(
	    conduit_tls_set_cert_file(ctx, cd_certs_file(&certs, "srv.crt"),
	                              cd_certs_file(&certs, "srv.key"), NULL),
	    CONDUIT_OK);
	ck_status(conduit_tls_set_ca_file(ctx, cd_certs_file(&certs, "ca.crt")),
	          CONDUIT_OK);
	conduit_flow *a, *b;
	ck_status(conduit_mem_pair(&a, &b, ctx, NULL), CONDUIT_OK);
	ck_status(conduit_starttls(&a, CONDUIT_ROLE_CLIENT, "localhost"),
	          CONDUIT_OK);
	ck_status(conduit_starttls(&b, CONDUIT_ROLE_SERVER, NULL), CONDUIT_OK);
	ck_assert(conduit_tls_is_tls(a) && conduit_tls_is_tls(b));
	ck_assert_str_eq(conduit_flow_uri(a),
	                 "tls+mem://1/a?servername=localhost");
	int ra = CONDUIT_WANT_WRITE, rb = CONDUIT_WANT_READ;
	uint64_t end = cd_now_ms() + (uint64_t)cd_scaled(10000);
	while (ra != CONDUIT_OK || rb != CONDUIT_OK) {
		ck_assert_msg(cd_now_ms() < end, "handshake: no progress");
		if (ra != CONDUIT_OK)
			ra = conduit_handshake(a);
		if (rb != CONDUIT_OK)
			rb = conduit_handshake(b);
		ck_assert_msg(ra == CONDUIT_OK || fk_is_want(ra), "client: %s",
		              conduit_flow_error(a));
		ck_assert_msg(rb == CONDUIT_OK || fk_is_want(rb), "server: %s",
		              conduit_flow_error(b));
	}
	fk_exchange(a, b);
	fk_free_all(a, b, NULL, ctx);
}
END_TEST

static const char cert_steps[] = "ca ca 'conduit mem CA'\n"
                                 "leaf srv localhost ext_srv ca 2\n";
#endif

int main(void)
{
	const struct cd_test tests[] = {
	    CD_TEST(pair_arguments, 0),
	    CD_TEST(no_room_to_register, 0),
	    CD_TEST(registration_and_names, 0),
	    CD_TEST(bounded_capacity, 0),
	    CD_TEST(max_io_makes_short_reads_and_writes, 0),
	    CD_TEST(injected_failure, 0),
	    CD_TEST(shut_rd_drops_and_refuses, 0),
	    CD_TEST(starttls_refused_over_unread_bytes, 0),
#ifdef CONDUIT_HAVE_TLS
	    CD_TEST(starttls_over_mem, 0),
#endif
	};
#ifdef CONDUIT_HAVE_TLS
	cd_certs_make(&certs, "conduit-mem", 30, "", cert_steps);
#endif
	int rc =
	    cd_run(cd_suite("mem", tests, sizeof(tests) / sizeof(tests[0])));
#ifdef CONDUIT_HAVE_TLS
	cd_certs_remove(&certs);
#endif
	return rc;
}
