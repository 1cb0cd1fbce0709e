/*
 * test_register.c - how backends get their per-context state: the one
 * registration path (conduit_ctx_register) that conduit_ctx_new() uses for
 * the built-in table and conduit_ctx_use_lwip() for lwIP.  A declared
 * state size is allocated zeroed by the context and freed after detach;
 * attach sees that state and the caller's argument and may refuse;
 * registering the same backend again swaps the state in place and
 * detaches the old one; freeing the context detaches everything, newest
 * first.
 */
#include "core.h"
#include "flowkit.h"
#include "harness.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#ifdef CONDUIT_HAVE_LWIP
#include <conduit/lwip.h>
#endif

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* What the test backends did, in order. */
static char journal[256];

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	size_t n = strlen(journal);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(journal + n, sizeof(journal) - n, fmt, ap);
	va_end(ap);
}

struct sized_state {
	uint64_t zero_check[8]; /* must arrive zeroed */
	char tag;
	int processed;
};

struct attach_arg {
	char tag;
	int refuse; /* status attach returns, CONDUIT_OK to accept */
};

static int sized_attach(void *state, conduit_ctx *ctx, void *arg)
{
	struct sized_state *st = state;
	for (size_t i = 0; i < NELEM(st->zero_check); i++)
		ck_assert_uint_eq(st->zero_check[i], 0);
	ck_assert_int_eq(st->tag, 0);
	const struct attach_arg *a = arg;
	if (a != NULL && a->refuse != CONDUIT_OK)
		return conduit_ctx_fail(ctx, a->refuse, "sized: refused");
	st->tag = a != NULL ? a->tag : '?';
	note("attach %c;", st->tag);
	return CONDUIT_OK;
}

static void sized_detach(void *state)
{
	struct sized_state *st = state;
	note("detach %c;", st->tag);
}

static int sized_process(void *state)
{
	struct sized_state *st = state;
	st->processed++;
	note("process %c;", st->tag);
	return CONDUIT_OK;
}

static const char *const sized_names[] = {"sized", NULL};
static const struct conduit_backend sized = {
    .name = "sized",
    .transports = sized_names,
    .ctx_process = sized_process,
    .state_size = sizeof(struct sized_state),
    .attach = sized_attach,
    .detach = sized_detach,
};

/* state_size 0: the state is the caller's argument itself. */
static int shared_attach(void *state, conduit_ctx *ctx, void *arg)
{
	(void)ctx;
	ck_assert_ptr_eq(state, arg);
	note("attach shared %s;", (const char *)state);
	return CONDUIT_OK;
}

static void shared_detach(void *state)
{
	note("detach shared %s;", (const char *)state);
}

static const char *const shared_names[] = {"shared", NULL};
static const struct conduit_backend shared = {
    .name = "shared",
    .transports = shared_names,
    .attach = shared_attach,
    .detach = shared_detach,
};

static const struct cd_registration *find(conduit_ctx *ctx, const char *name)
{
	return cd_find_transport(ctx, name);
}

START_TEST(builtins_come_from_the_table)
{
	conduit_ctx *ctx = NULL;
	ck_assert_int_eq(conduit_ctx_new(&ctx), CONDUIT_OK);
	size_t n = 0;
	while (cd_builtin_backends[n] != NULL)
		n++;
	ck_assert_uint_eq(conduit_ctx_backend_count(ctx), n);
	for (size_t i = 0; i < n; i++) {
		ck_assert_str_eq(conduit_ctx_backend_name(ctx, i),
		                 cd_builtin_backends[i]->name);
		/* Each got the state it declared: allocated when sized. */
		if (cd_builtin_backends[i]->state_size > 0)
			ck_assert_ptr_nonnull(ctx->backends[i].state);
	}
	conduit_ctx_free(ctx);
}
END_TEST

START_TEST(sized_state_is_allocated_zeroed_and_freed)
{
	conduit_ctx *ctx = NULL;
	ck_assert_int_eq(conduit_ctx_new(&ctx), CONDUIT_OK);
	size_t builtin = conduit_ctx_backend_count(ctx);
	journal[0] = '\0';
	struct attach_arg a = {.tag = 'a'};
	ck_assert_int_eq(conduit_ctx_register(ctx, &sized, &a), CONDUIT_OK);
	ck_assert_uint_eq(conduit_ctx_backend_count(ctx), builtin + 1);
	const struct cd_registration *r = find(ctx, "sized");
	ck_assert_ptr_nonnull(r);
	/* The state is the context's block, never the argument. */
	ck_assert_ptr_ne(r->state, &a);
	struct sized_state *st = r->state;
	ck_assert_int_eq(st->tag, 'a');
	/* The poll hook gets the same state. */
	ck_assert_int_eq(conduit_process(ctx), CONDUIT_OK);
	ck_assert_int_eq(st->processed, 1);
	conduit_ctx_free(ctx); /* ASan checks the block is freed */
	ck_assert_str_eq(journal, "attach a;process a;detach a;");
}
END_TEST

START_TEST(a_refused_attach_leaves_nothing)
{
	conduit_ctx *ctx = NULL;
	ck_assert_int_eq(conduit_ctx_new(&ctx), CONDUIT_OK);
	size_t builtin = conduit_ctx_backend_count(ctx);
	journal[0] = '\0';
	struct attach_arg no = {.tag = 'x', .refuse = CONDUIT_ERR_STATE};
	ck_assert_int_eq(conduit_ctx_register(ctx, &sized, &no),
	                 CONDUIT_ERR_STATE);
	ck_assert_str_eq(conduit_ctx_error(ctx), "sized: refused");
	ck_assert_uint_eq(conduit_ctx_backend_count(ctx), builtin);
	ck_assert_ptr_null(find(ctx, "sized"));
	/* No hook of it runs. */
	ck_assert_int_eq(conduit_process(ctx), CONDUIT_OK);
	ck_assert_str_eq(journal, "");

	/* Refused again over a working registration: the old one stays. */
	struct attach_arg a = {.tag = 'a'};
	ck_assert_int_eq(conduit_ctx_register(ctx, &sized, &a), CONDUIT_OK);
	ck_assert_int_eq(conduit_ctx_register(ctx, &sized, &no),
	                 CONDUIT_ERR_STATE);
	ck_assert_int_eq(((struct sized_state *)find(ctx, "sized")->state)->tag,
	                 'a');
	conduit_ctx_free(ctx);
	ck_assert_str_eq(journal, "attach a;detach a;");
}
END_TEST

START_TEST(registered_again_swaps_in_place)
{
	conduit_ctx *ctx = NULL;
	ck_assert_int_eq(conduit_ctx_new(&ctx), CONDUIT_OK);
	size_t builtin = conduit_ctx_backend_count(ctx);
	journal[0] = '\0';
	struct attach_arg a = {.tag = 'a'}, b = {.tag = 'b'};
	ck_assert_int_eq(conduit_ctx_register(ctx, &sized, &a), CONDUIT_OK);
	ck_assert_int_eq(conduit_ctx_register(ctx, &shared, "one"), CONDUIT_OK);
	ck_assert_int_eq(conduit_ctx_register(ctx, &sized, &b), CONDUIT_OK);
	/* The new state attached before the old one is let go, in the old
	 * place: no new entry, order kept. */
	ck_assert_uint_eq(conduit_ctx_backend_count(ctx), builtin + 2);
	ck_assert_str_eq(conduit_ctx_backend_name(ctx, builtin), "sized");
	ck_assert_str_eq(conduit_ctx_backend_name(ctx, builtin + 1), "shared");
	ck_assert_int_eq(conduit_process(ctx), CONDUIT_OK);
	conduit_ctx_free(ctx);
	ck_assert_str_eq(journal, "attach a;attach shared one;attach b;"
	                          "detach a;process b;detach shared one;"
	                          "detach b;");
}
END_TEST

START_TEST(bad_registrations_are_refused)
{
	conduit_ctx *ctx = NULL;
	ck_assert_int_eq(conduit_ctx_new(&ctx), CONDUIT_OK);
	ck_assert_int_eq(conduit_ctx_register(NULL, &sized, NULL),
	                 CONDUIT_ERR_INVALID);
	ck_assert_int_eq(conduit_ctx_register(ctx, NULL, NULL),
	                 CONDUIT_ERR_INVALID);
	static const struct conduit_backend nameless = {.state_size = 8};
	ck_assert_int_eq(conduit_ctx_register(ctx, &nameless, NULL),
	                 CONDUIT_ERR_INVALID);
	/* The table is full: a clear message, nothing allocated kept. */
	static struct conduit_backend many[CD_MAX_BACKENDS];
	static char names[CD_MAX_BACKENDS][16];
	int rc = CONDUIT_OK;
	size_t i;
	for (i = 0; i < CD_MAX_BACKENDS && rc == CONDUIT_OK; i++) {
		snprintf(names[i], sizeof(names[i]), "many%zu", i);
		many[i] = (struct conduit_backend){.name = names[i],
		                                   .state_size = 32};
		rc = conduit_ctx_register(ctx, &many[i], NULL);
	}
	ck_assert_int_eq(rc, CONDUIT_ERR_INVALID);
	ck_assert_uint_eq(conduit_ctx_backend_count(ctx), CD_MAX_BACKENDS);
	ck_assert_ptr_nonnull(
	    strstr(conduit_ctx_error(ctx), "too many backends"));
	ck_assert_ptr_nonnull(strstr(conduit_ctx_error(ctx), names[i - 1]));
	conduit_ctx_free(ctx);
}
END_TEST

#ifdef CONDUIT_HAVE_LWIP
/* lwIP is chosen at run time through the same registration: it becomes
 * the "tcp" transport, serves one context at a time (its attach refuses a
 * second, which stays as it was), and is free again when that context
 * goes. */
START_TEST(lwip_is_chosen_through_registration)
{
	conduit_lwip *st = NULL;
	ck_status(conduit_lwip_stack(&st), CONDUIT_OK);
	conduit_ctx *a = NULL, *b = NULL;
	ck_status(conduit_ctx_new(&a), CONDUIT_OK);
	ck_status(conduit_ctx_new(&b), CONDUIT_OK);
	size_t builtin = conduit_ctx_backend_count(a);
	ck_status(conduit_ctx_use_lwip(a, st), CONDUIT_OK);
	ck_assert_uint_eq(conduit_ctx_backend_count(a), builtin + 1);
	ck_assert_str_eq(conduit_ctx_backend_name(a, builtin), "lwip");
	ck_assert_str_eq(cd_find_transport(a, "tcp")->be->name, "lwip");
	ck_assert_ptr_eq(cd_find_transport(a, "tcp")->state, st);
	ck_status(conduit_ctx_use_lwip(a, st), CONDUIT_OK); /* no-op */
	ck_assert_uint_eq(conduit_ctx_backend_count(a), builtin + 1);

	ck_status(conduit_ctx_use_lwip(b, st), CONDUIT_ERR_STATE);
	ck_assert_ptr_nonnull(strstr(conduit_ctx_error(b), "another context"));
	ck_assert_uint_eq(conduit_ctx_backend_count(b), builtin);
	/* b's tcp is as it was: host TCP, or none in a build without. */
	const struct cd_registration *tcp = cd_find_transport(b, "tcp");
	ck_assert(tcp == NULL || strcmp(tcp->be->name, "lwip") != 0);

	conduit_ctx_free(a);
	ck_status(conduit_ctx_use_lwip(b, st), CONDUIT_OK);
	ck_assert_str_eq(cd_find_transport(b, "tcp")->be->name, "lwip");
	conduit_ctx_free(b);
	conduit_lwip_release(st);
}
END_TEST
#endif

int main(void)
{
	const struct cd_test tests[] = {
	    CD_TEST(builtins_come_from_the_table, 0),
	    CD_TEST(sized_state_is_allocated_zeroed_and_freed, 0),
	    CD_TEST(a_refused_attach_leaves_nothing, 0),
	    CD_TEST(registered_again_swaps_in_place, 0),
	    CD_TEST(bad_registrations_are_refused, 0),
#ifdef CONDUIT_HAVE_LWIP
	    CD_TEST(lwip_is_chosen_through_registration, 0),
#endif
	};
	return cd_run(cd_suite("register", tests, NELEM(tests)));
}
