/*
 * ctx.c - contexts: the registry of backends (which is how a context's TCP
 * stack is chosen at run time), options, the observer, and the error
 * helpers every object shares.  Which backends a build has is data
 * (builtin.c); this file names none of them.
 */
#include "core.h"

#include <conduit/platform.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

int conduit_ctx_new(conduit_ctx **out)
{
	if (out == NULL)
		return CONDUIT_ERR_INVALID;
	*out = NULL;
	conduit_ctx *ctx = calloc(1, sizeof(*ctx));
	if (ctx == NULL)
		return CONDUIT_ERR_NOMEM;
	/* The build's own backends, through the path any backend takes. */
	for (const struct conduit_backend *const *be = cd_builtin_backends;
	     *be != NULL; be++) {
		int rc = conduit_ctx_register(ctx, *be, NULL);
		if (rc != CONDUIT_OK) {
			conduit_ctx_free(ctx);
			return rc;
		}
	}
	*out = ctx;
	return CONDUIT_OK;
}

/* Undo one registration's attach, and free the state the context gave. */
static void detach(const struct conduit_backend *be, void *state)
{
	if (be->detach != NULL)
		be->detach(state);
	if (be->state_size > 0)
		free(state);
}

void conduit_ctx_free(conduit_ctx *ctx)
{
	if (ctx == NULL)
		return;
	for (size_t i = ctx->nbackends; i-- > 0;)
		detach(ctx->backends[i].be, ctx->backends[i].state);
	cd_ctx_changed(ctx); /* frees the remembered resolutions */
	cd_ruleset_free(&ctx->rules);
	free(ctx->pfds);
	free(ctx->spans);
	free(ctx->error);
	free(ctx);
}

const char *conduit_ctx_error(const conduit_ctx *ctx)
{
	return ctx != NULL && ctx->error != NULL ? ctx->error : "";
}

void conduit_ctx_set_connect_timeout(conduit_ctx *ctx, uint32_t ms)
{
	if (ctx != NULL)
		ctx->connect_timeout_ms = ms;
}

void conduit_ctx_allow_uri_options(conduit_ctx *ctx, unsigned classes)
{
	if (ctx == NULL)
		return;
	ctx->uri_options = classes & (CONDUIT_URI_FILES | CONDUIT_URI_INSECURE);
	cd_ctx_changed(ctx);
}

void conduit_ctx_set_lookup(conduit_ctx *ctx, conduit_lookup_fn fn, void *arg)
{
	if (ctx == NULL)
		return;
	ctx->lookup = fn;
	ctx->lookup_arg = fn != NULL ? arg : NULL;
	cd_ctx_changed(ctx);
}

size_t conduit_ctx_backend_count(const conduit_ctx *ctx)
{
	return ctx != NULL ? ctx->nbackends : 0;
}

const char *conduit_ctx_backend_name(const conduit_ctx *ctx, size_t i)
{
	if (ctx == NULL || i >= ctx->nbackends)
		return NULL;
	return ctx->backends[i].be->name;
}

int conduit_ctx_register(conduit_ctx *ctx, const struct conduit_backend *be,
                         void *arg)
{
	if (ctx == NULL || be == NULL || be->name == NULL)
		return CONDUIT_ERR_INVALID;
	size_t at = 0;
	while (at < ctx->nbackends && ctx->backends[at].be != be)
		at++;
	if (at == CD_MAX_BACKENDS)
		return conduit_ctx_fail(
		    ctx, CONDUIT_ERR_INVALID,
		    "register %s: too many backends (limit %d)", be->name,
		    CD_MAX_BACKENDS);
	void *state = arg;
	if (be->state_size > 0) {
		state = calloc(1, be->state_size);
		if (state == NULL)
			return conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
			                        "register %s: out of memory",
			                        be->name);
	}
	if (be->attach != NULL) {
		int rc = be->attach(state, ctx, arg);
		if (rc != CONDUIT_OK) {
			if (be->state_size > 0)
				free(state);
			return rc;
		}
	}
	if (at < ctx->nbackends) {
		/* Registered again: the new state in the old place. */
		void *old = ctx->backends[at].state;
		ctx->backends[at].state = state;
		for (size_t k = 0; k < ctx->nprocs; k++)
			if (ctx->procs[k].be == be)
				ctx->procs[k].state = state;
		detach(be, old);
		return CONDUIT_OK;
	}
	ctx->backends[at].be = be;
	ctx->backends[at].state = state;
	ctx->nbackends++;
	if (be->ctx_process != NULL)
		ctx->procs[ctx->nprocs++] = (struct cd_proc){
		    .fn = be->ctx_process, .state = state, .be = be};
	return CONDUIT_OK;
}

static bool names_has(const char *const *names, const char *name)
{
	if (names == NULL)
		return false;
	for (; *names != NULL; names++)
		if (strcmp(*names, name) == 0)
			return true;
	return false;
}

/* The most recent registration for a name wins. */
const struct cd_registration *cd_find_transport(const conduit_ctx *ctx,
                                                const char *name)
{
	for (size_t i = ctx->nbackends; i-- > 0;)
		if (names_has(ctx->backends[i].be->transports, name))
			return &ctx->backends[i];
	return NULL;
}

const struct cd_registration *cd_find_layer(const conduit_ctx *ctx,
                                            const char *name)
{
	for (size_t i = ctx->nbackends; i-- > 0;)
		if (names_has(ctx->backends[i].be->layers, name))
			return &ctx->backends[i];
	return NULL;
}

void conduit_ctx_set_observer(conduit_ctx *ctx, conduit_observer_fn fn,
                              void *arg)
{
	if (ctx == NULL)
		return;
	ctx->observer = fn;
	ctx->observer_arg = fn != NULL ? arg : NULL;
}

static const char *const phase_names[] = {
    [CONDUIT_PHASE_RESOLVING] = "resolving",
    [CONDUIT_PHASE_RESOLVED] = "resolved",
    [CONDUIT_PHASE_CONNECTING] = "connecting",
    [CONDUIT_PHASE_CONNECTED] = "connected",
    [CONDUIT_PHASE_ACCEPTED] = "accepted",
    [CONDUIT_PHASE_FAILED] = "failed",
    [CONDUIT_PHASE_CLOSED] = "closed",
    [CONDUIT_PHASE_TLS_HANDSHAKING] = "tls-handshaking",
    [CONDUIT_PHASE_TLS_HANDSHAKED] = "tls-handshaked",
};

const char *conduit_phase_name(enum conduit_phase phase)
{
	if ((unsigned)phase >= sizeof(phase_names) / sizeof(phase_names[0]))
		return "?";
	return phase_names[phase];
}

int conduit_observed(const conduit_ctx *ctx)
{
	return ctx != NULL && ctx->observer != NULL;
}

/* conduit_emit() to an observer, kept apart so that the far more common
 * call with none costs a test and a return. */
static CD_COLD void emit_to(conduit_ctx *ctx, enum conduit_phase phase,
                            int status, const char *uri, const char *detail,
                            conduit_flow *f)
{
	/* URIs and details quote what users and peers wrote. */
	char *ut, *dt;
	struct conduit_event ev = {
	    .phase = phase,
	    .status = status,
	    .uri = cd_text_for(uri, &ut),
	    .detail = cd_text_for(detail, &dt),
	    .flow = f,
	};
	ctx->observer(ctx->observer_arg, &ev);
	free(ut);
	free(dt);
}

void conduit_emit(conduit_ctx *ctx, enum conduit_phase phase, int status,
                  const char *uri, const char *detail, conduit_flow *f)
{
	if (ctx != NULL && ctx->observer != NULL)
		emit_to(ctx, phase, status, uri, detail, f);
}

int conduit_ctx_fail(conduit_ctx *ctx, int status, const char *fmt, ...)
{
	if (ctx == NULL)
		return status;
	va_list ap;
	va_start(ap, fmt);
	cd_set_message(&ctx->error, fmt, ap);
	va_end(ap);
	return status;
}

int conduit_flow_fail(conduit_flow *f, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	cd_set_message(&f->error, fmt, ap);
	va_end(ap);
	return status;
}

int conduit_listener_fail(conduit_listener *l, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	cd_set_message(&l->error, fmt, ap);
	va_end(ap);
	return status;
}

uint64_t conduit_now_ms(void)
{
	return conduit_platform_now_ms();
}
