/*
 * lwip_connect.c - connecting a flow over lwIP.  The addresses of an
 * endpoint race as the shared TCP policy says (backends/tcppolicy: the
 * order, the stagger, the timeout, the socket options), one lwIP pcb per
 * attempt; the first to connect becomes the flow's pcb and the others are
 * aborted.  Also what a connected flow tells tests about its options.
 */
#include "lwstack.h"

#include <stdlib.h>
#include <string.h>

/* The peer as messages show it: "10.0.0.2:7000"; buf has LW_ADDR_MAX
 * bytes. */
static const char *where(const struct lw_flow *f, char *buf)
{
	cd_lwip_describe(&f->peer, f->peer_port, buf);
	return buf;
}

static err_t on_connected(void *arg, struct tcp_pcb *pcb, err_t err)
{
	struct lw_flow *f = arg;
	(void)pcb;
	(void)err; /* always ERR_OK in lwIP 2.1 */
	f->connected = true;
	return ERR_OK;
}

/* ------------------------------------------------------------------ */
/* The connect race                                                    */

static err_t on_att_connected(void *arg, struct tcp_pcb *pcb, err_t err);

/* An attempt's pcb, lost by lwIP (it is freed already). */
static void on_att_err(void *arg, err_t err)
{
	struct lw_att *a = arg;
	if (a == NULL)
		return;
	a->pcb = NULL;
	a->f->st->npcbs--;
	a->lwerr = err;
	a->ended = true;
	a->f->deadline = LW_NOW;
}

/* Point a's pcb's callbacks at a. */
static void att_bind_slot(struct lw_att *a)
{
	tcp_arg(a->pcb, a);
	tcp_recv(a->pcb, NULL); /* it has not connected: nothing comes */
	tcp_err(a->pcb, on_att_err);
	a->pcb->connected = on_att_connected;
}

/* Make a's pcb the flow's: the flow's callbacks, its peer. */
static void att_bind_flow(struct lw_flow *f, struct lw_att *a)
{
	f->pcb = a->pcb;
	f->cur = a;
	tcp_arg(a->pcb, f);
	tcp_recv(a->pcb, cd_lwip_on_recv);
	tcp_err(a->pcb, cd_lwip_on_err);
	a->pcb->connected = on_connected;
	if (f->natt > 1)
		cd_lwip_to_ip(&f->addrs[a->addr], &f->peer);
}

/* An attempt that is not the flow's connected.  The first one wins and
 * becomes the flow's pcb at once, before any data can come on it; one
 * connecting after that is aborted. */
static err_t on_att_connected(void *arg, struct tcp_pcb *pcb, err_t err)
{
	struct lw_att *a = arg;
	struct lw_flow *f = a->f;
	(void)err;
	if (f->connected) {
		tcp_arg(pcb, NULL);
		tcp_err(pcb, NULL);
		a->pcb = NULL;
		f->st->npcbs--;
		tcp_abort(pcb);
		return ERR_ABRT;
	}
	if (f->cur != NULL && f->pcb != NULL) {
		att_bind_slot(f->cur);
	} else if (f->cur != NULL) {
		/* The flow's attempt ended (cd_lwip_on_err counted its pcb);
		 * this one wins all the same. */
		f->cur->pcb = NULL;
		f->error = CONDUIT_OK;
	}
	att_bind_flow(f, a);
	f->connected = true;
	return ERR_OK;
}

/* Abort every attempt but the flow's own pcb, and let go of the race's
 * memory. */
void cd_lwip_race_release(struct lw_flow *f)
{
	for (size_t i = 0; i < f->natt; i++) {
		struct lw_att *a = &f->att[i];
		if (a == f->cur || a->pcb == NULL)
			continue;
		tcp_arg(a->pcb, NULL);
		tcp_err(a->pcb, NULL);
		tcp_abort(a->pcb);
		a->pcb = NULL;
		f->st->npcbs--;
	}
	f->cur = NULL;
	f->natt = 0;
	if (f->att != &f->att1)
		free(f->att); /* the addresses are in the same block */
	f->att = &f->att1;
	f->addrs = &f->addr1;
	cd_race_fini(&f->race);
}

/* An attempt on address i failed with status (text says how): note it
 * and tell the race. */
static void att_failed(struct lw_flow *f, size_t i, int status,
                       const char *text)
{
	f->last_status = status;
	f->last_text = text;
	f->last_addr = i;
	cd_race_failed(&f->race);
}

/* How lwIP's error for a connection that never connected reads. */
static int att_status(err_t e)
{
	return e == ERR_RST    ? CONDUIT_ERR_REFUSED
	       : e == ERR_ABRT ? CONDUIT_ERR_TIMED_OUT
	                       : CONDUIT_ERR_UNREACHABLE;
}

static const char *att_text(int status, err_t e)
{
	return status == CONDUIT_ERR_REFUSED ? "connection refused"
	                                     : cd_lwip_err_text(e);
}

/* The shared policy's options on a new pcb. */
static void apply_opts(struct tcp_pcb *pcb, const struct cd_tcp_opts *o)
{
	if (o->nodelay)
		tcp_nagle_disable(pcb);
	if (o->keep_idle_s > 0) {
		ip_set_option(pcb, SOF_KEEPALIVE);
		pcb->keep_idle = o->keep_idle_s * 1000u;
		pcb->keep_intvl = o->keep_intvl_s * 1000u;
		pcb->keep_cnt = o->keep_cnt;
	}
}

/* Start an attempt on address i in a free slot; one that cannot start
 * is told to the race as failed. */
static void start_attempt(struct lw_flow *f, size_t i)
{
	ip_addr_t dst;
	cd_lwip_to_ip(&f->addrs[i], &dst);
	ip_addr_copy(f->peer, dst);
	f->peer_port = (u16_t)f->port;
	if (conduit_observed(f->base.ctx)) {
		char buf[LW_ADDR_MAX];
		conduit_emit(f->base.ctx, CONDUIT_PHASE_CONNECTING, CONDUIT_OK,
		             f->base.uri, where(f, buf), &f->base);
	}
	ip_addr_t src;
	conduit_lwip_netif *out;
	if (f->opts.have_source) {
		cd_lwip_to_ip(&f->opts.source, &src);
		out = cd_lwip_netif_owning(f->st, &src);
	} else {
		out = cd_lwip_netif_towards(f->st, &dst);
	}
	if (out == NULL)
		return att_failed(f, i, CONDUIT_ERR_UNREACHABLE,
		                  "no lwIP netif leads there");
	/* lwIP sends these to itself through its loopback, which needs its
	 * thread: a polled stack would abort. */
	if (ip_addr_isloopback(&dst))
		return att_failed(f, i, CONDUIT_ERR_UNREACHABLE,
		                  "a loopback address; lwIP's loopback needs "
		                  "its own thread, which a polled stack does "
		                  "not run");
	if (cd_lwip_netif_has(out, &dst))
		return att_failed(f, i, CONDUIT_ERR_UNREACHABLE,
		                  "the netif's own address; lwIP's loopback "
		                  "needs its own thread, which a polled stack "
		                  "does not run");
	struct tcp_pcb *pcb =
	    tcp_new_ip_type(IP_IS_V4(&dst) ? IPADDR_TYPE_V4 : IPADDR_TYPE_V6);
	if (pcb == NULL)
		return att_failed(f, i, CONDUIT_ERR_NOMEM, "out of lwIP pcbs");
	/* Pinned: otherwise a destination that is another netif of this
	 * stack goes through lwIP's loopback. */
	tcp_bind_netif(pcb, &out->nif);
	err_t e = f->opts.have_source ? tcp_bind(pcb, &src, 0) : ERR_OK;
	if (e != ERR_OK) {
		tcp_close(pcb); /* bound only: freed at once */
		return att_failed(f, i,
		                  e == ERR_USE   ? CONDUIT_ERR_ADDR_IN_USE
		                  : e == ERR_MEM ? CONDUIT_ERR_NOMEM
		                                 : CONDUIT_ERR_UNREACHABLE,
		                  cd_lwip_err_text(e));
	}
	apply_opts(pcb, &f->opts);
	struct lw_att *a = f->att;
	while (a->pcb != NULL || a->ended)
		a++; /* the race starts no more than natt at once */
	*a = (struct lw_att){.f = f, .pcb = pcb, .addr = i};
	f->st->npcbs++;
	/* The first attempt in flight is the flow's from the start. */
	bool mine = f->cur == NULL;
	if (mine)
		att_bind_flow(f, a);
	else
		att_bind_slot(a);
	e = tcp_connect(pcb, &dst, (u16_t)f->port,
	                mine ? on_connected : on_att_connected);
	if (e != ERR_OK) {
		tcp_arg(pcb, NULL);
		tcp_err(pcb, NULL);
		tcp_abort(pcb);
		a->pcb = NULL;
		f->st->npcbs--;
		if (mine) {
			f->cur = NULL;
			f->pcb = NULL;
		}
		att_failed(f, i,
		           e == ERR_MEM ? CONDUIT_ERR_NOMEM
		                        : CONDUIT_ERR_UNREACHABLE,
		           cd_lwip_err_text(e));
	}
}

/* The race's failure, as the host backend words it. */
static int race_failed(struct lw_flow *f)
{
	char buf[LW_ADDR_MAX];
	int st = f->last_status != CONDUIT_OK ? f->last_status
	                                      : CONDUIT_ERR_UNREACHABLE;
	cd_lwip_to_ip(&f->addrs[f->last_addr], &f->peer);
	f->peer_port = (u16_t)f->port;
	size_t n = cd_race_count(&f->race);
	if (n > 1)
		return conduit_flow_fail(&f->base, st,
		                         "connect %s: %s (%zu addresses tried, "
		                         "last %s)",
		                         f->base.uri, f->last_text, n,
		                         where(f, buf));
	return conduit_flow_fail(&f->base, st, "connect %s: %s: %s",
	                         f->base.uri, where(f, buf), f->last_text);
}

/* One turn of the race: take in the attempts that ended, then do what
 * the race says.  CONDUIT_OK once connected, CONDUIT_WANT_WRITE while
 * racing, else the failure. */
static int race_step(struct lw_flow *f, uint64_t now)
{
	char buf[LW_ADDR_MAX];
	struct lw_att *cur = f->cur;
	if (cur != NULL && f->pcb == NULL) {
		/* The flow's pcb ended: cd_lwip_on_err said how. */
		int st =
		    f->error != CONDUIT_OK ? f->error : CONDUIT_ERR_UNREACHABLE;
		cur->pcb = NULL;
		f->cur = NULL;
		att_failed(f, cur->addr, st, att_text(st, f->lwerr));
		f->error = CONDUIT_OK;
		f->connected = false;
	} else if (f->connected) {
		cd_race_won(&f->race);
		if (f->natt > 1) {
			cd_lwip_race_release(f);
		} else {
			f->cur = NULL; /* one address: nothing else to let go */
			f->natt = 0;
		}
		f->deadline = 0;
		if (conduit_observed(f->base.ctx))
			conduit_emit(f->base.ctx, CONDUIT_PHASE_CONNECTED,
			             CONDUIT_OK, f->base.uri, where(f, buf),
			             &f->base);
		return CONDUIT_OK;
	}
	for (size_t i = 0; i < f->natt; i++) {
		struct lw_att *a = &f->att[i];
		if (!a->ended)
			continue;
		a->ended = false;
		int st = att_status(a->lwerr);
		att_failed(f, a->addr, st, att_text(st, a->lwerr));
	}
	size_t i = 0;
	enum cd_race_step step;
	while ((step = cd_race_next(&f->race, now, &i)) == CD_RACE_START)
		start_attempt(f, i);
	if (step == CD_RACE_TIMEOUT) {
		cd_lwip_abort_pcb(f);
		cd_lwip_race_release(f);
		f->deadline = 0;
		return conduit_flow_fail(
		    &f->base, CONDUIT_ERR_TIMED_OUT,
		    "connect %s: %s: timed out after %u ms", f->base.uri,
		    where(f, buf), (unsigned)f->base.ctx->connect_timeout_ms);
	}
	if (step == CD_RACE_FAILED) {
		f->deadline = 0;
		int rc = race_failed(f);
		cd_lwip_race_release(f);
		return rc;
	}
	/* Some attempt's pcb is the flow's while any is in flight. */
	if (f->cur == NULL)
		for (size_t k = 0; k < f->natt; k++)
			if (f->att[k].pcb != NULL) {
				att_bind_flow(f, &f->att[k]);
				break;
			}
	uint64_t wake = cd_race_wake(&f->race);
	f->deadline = wake == UINT64_MAX ? 0 : wake;
	return CONDUIT_WANT_WRITE;
}

int cd_lwip_connect(void *state, conduit_ctx *ctx, const conduit_endpoint *ep,
                    conduit_flow **out)
{
	conduit_lwip *st = state;
	if (ep->host_kind == CONDUIT_HOST_NONE)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_HOST,
		                        "connect %s: no host to connect to",
		                        cd_endpoint_shown(ep));
	if (ep->naddrs == 0)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_RESOLVE,
		                        "connect %s: no address",
		                        cd_endpoint_shown(ep));
	struct cd_tcp_opts o;
	int rc = cd_tcp_opts_parse(&o, ctx, ep);
	if (rc != CONDUIT_OK)
		return rc;
	/* With a source address only addresses of its family can work. */
	size_t n = 0;
	for (size_t i = 0; i < ep->naddrs; i++)
		n += cd_tcp_opts_fit(&o, ep->addrs[i].family);
	if (n == 0)
		return cd_tcp_opts_no_fit(ctx, ep, &o);
	struct lw_flow *f = cd_lwip_flow_alloc(st, ctx, ep->uri);
	/* One address, the usual case, needs no allocation of its own;
	 * several share one block with their attempts. */
	size_t natt = n < CD_RACE_MAX_ATTEMPTS ? n : CD_RACE_MAX_ATTEMPTS;
	if (f != NULL && n > 1) {
		struct lw_att *att = calloc(
		    1, natt * sizeof(*att) + n * sizeof(struct conduit_addr));
		if (att != NULL) {
			f->att = att;
			f->addrs = (struct conduit_addr *)(att + natt);
			f->natt = natt; /* so that destroy frees the block */
		} else {
			cd_lwip_flow_ops.destroy(&f->base);
			f = NULL;
		}
	}
	if (f == NULL)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
		                        "connect %s: out of memory",
		                        cd_endpoint_shown(ep));
	if (n == 1)
		f->att1 = (struct lw_att){.pcb = NULL};
	f->natt = natt;
	f->last_status = CONDUIT_OK;
	f->last_text = "";
	f->last_addr = 0;
	f->opts = o;
	f->nodelay = o.nodelay;
	f->port = ep->dest_port > 0 ? ep->dest_port : ep->port;
	/* The clock matters only to a stagger or a timeout. */
	uint64_t now =
	    n > 1 || ctx->connect_timeout_ms > 0 ? conduit_now_ms() : 0;
	cd_race_init(&f->race, now, ctx->connect_timeout_ms, natt);
	for (size_t i = 0, k = 0; i < ep->naddrs && rc == CONDUIT_OK; i++) {
		if (!cd_tcp_opts_fit(&o, ep->addrs[i].family))
			continue;
		f->addrs[k++] = ep->addrs[i];
		rc = cd_race_add(&f->race,
		                 ep->addrs[i].family == CONDUIT_AF_INET6
		                     ? CD_RACE_V6
		                     : CD_RACE_OTHER);
	}
	cd_race_complete(&f->race);
	if (rc != CONDUIT_OK)
		rc = conduit_flow_fail(
		    &f->base, rc, "connect %s: out of memory", f->base.uri);
	else
		rc = race_step(f, now);
	if (rc != CONDUIT_OK && rc != CONDUIT_WANT_WRITE) {
		conduit_ctx_fail(ctx, rc, "%s", conduit_flow_error(&f->base));
		cd_lwip_flow_ops.destroy(&f->base);
		return rc;
	}
	*out = &f->base;
	return CONDUIT_OK;
}

int cd_lwip_handshake(conduit_flow *base)
{
	struct lw_flow *f = (struct lw_flow *)base;
	/* Most calls find nothing new: no attempt connected or ended (one
	 * that ends makes the deadline now) and nothing due. */
	bool quiet = !f->connected && f->pcb != NULL;
	if (quiet && f->deadline == 0)
		return CONDUIT_WANT_WRITE;
	/* A winner needs no clock. */
	uint64_t now = f->connected && f->pcb != NULL ? 0 : conduit_now_ms();
	if (quiet && now < f->deadline)
		return CONDUIT_WANT_WRITE;
	return race_step(f, now);
}

int cd_lwip_tcp_info(const conduit_flow *base, struct cd_lwip_tcp_info *out)
{
	if (base == NULL || base->ops != &cd_lwip_flow_ops || out == NULL)
		return CONDUIT_ERR_INVALID;
	const struct tcp_pcb *pcb = ((const struct lw_flow *)base)->pcb;
	if (pcb == NULL)
		return CONDUIT_ERR_INVALID;
	out->nodelay = tcp_nagle_disabled(pcb);
	out->keepalive = ip_get_option(pcb, SOF_KEEPALIVE) != 0;
	out->keep_idle_ms = pcb->keep_idle;
	out->keep_intvl_ms = pcb->keep_intvl;
	out->keep_cnt = pcb->keep_cnt;
	return CONDUIT_OK;
}
