/*
 * lwip_listen.c - listening on lwIP: a listening pcb per listener, the
 * connections lwIP accepts made flows at once and queued until
 * conduit_accept() takes them.
 */
#include "lwstack.h"

#include <stdlib.h>
#include <string.h>

#include "lwip/ip.h"

/* Connections a listener holds before conduit_accept() takes them. */
#define LW_BACKLOG 128

static void setup_pcb(struct lw_flow *f, struct tcp_pcb *pcb)
{
	f->pcb = pcb;
	f->st->npcbs++;
	tcp_arg(pcb, f);
	tcp_recv(pcb, cd_lwip_on_recv);
	tcp_err(pcb, cd_lwip_on_err);
	if (f->nodelay)
		tcp_nagle_disable(pcb);
}

/* ------------------------------------------------------------------ */
/* Listeners                                                           */

struct lw_listener {
	conduit_listener base;
	conduit_lwip *st;
	struct tcp_pcb *pcb;
	/* Accepted flows waiting for conduit_accept(), a FIFO. */
	struct lw_flow *queue[LW_BACKLOG];
	size_t q_head, q_n;
};

static err_t on_accept(void *arg, struct tcp_pcb *npcb, err_t err)
{
	struct lw_listener *l = arg;
	if (err != ERR_OK || npcb == NULL)
		return ERR_VAL;
	if (l->q_n == LW_BACKLOG)
		return ERR_MEM; /* lwIP aborts the connection */
	char uri[6 + LW_ADDR_MAX];
	memcpy(uri, "tcp://", 6);
	cd_lwip_describe(&npcb->remote_ip, npcb->remote_port, uri + 6);
	struct lw_flow *f = cd_lwip_flow_alloc(l->st, l->base.ctx, uri);
	if (f == NULL)
		return ERR_MEM;
	ip_addr_copy(f->peer, npcb->remote_ip);
	f->peer_port = npcb->remote_port;
	/* The SYN came in on this netif: answers go out on it too. */
	if (npcb->netif_idx == NETIF_NO_INDEX &&
	    ip_current_input_netif() != NULL)
		tcp_bind_netif(npcb, ip_current_input_netif());
	setup_pcb(f, npcb);
	f->connected = true;
	f->base.state |= CONDUIT_FLOW_ESTABLISHED;
	l->queue[(l->q_head + l->q_n) % LW_BACKLOG] = f;
	l->q_n++;
	return ERR_OK;
}

static int ll_accept(conduit_listener *base, conduit_flow **out)
{
	struct lw_listener *l = (struct lw_listener *)base;
	if (l->q_n == 0)
		return CONDUIT_WANT_READ;
	struct lw_flow *f = l->queue[l->q_head];
	l->q_head = (l->q_head + 1) % LW_BACKLOG;
	l->q_n--;
	/* conduit_accept() reports "accepted", with the flow's URI. */
	*out = &f->base;
	return CONDUIT_OK;
}

static void ll_destroy(conduit_listener *base)
{
	struct lw_listener *l = (struct lw_listener *)base;
	while (l->q_n > 0) {
		cd_lwip_flow_destroy(&l->queue[l->q_head]->base);
		l->q_head = (l->q_head + 1) % LW_BACKLOG;
		l->q_n--;
	}
	if (l->pcb != NULL) {
		tcp_arg(l->pcb, NULL);
		tcp_accept(l->pcb, NULL);
		tcp_close(l->pcb); /* a listening pcb closes at once */
		l->st->npcbs--;
	}
	l->st->nlisteners--;
	conduit_listener_fini(base);
	free(l);
}

static void ll_wait(conduit_listener *base, struct conduit_waitset *ws)
{
	(void)base;
	(void)ws; /* the stack's hook does the waiting */
}

static unsigned ll_pending(conduit_listener *base)
{
	return ((struct lw_listener *)base)->q_n > 0 ? CONDUIT_POLLIN : 0;
}

static const struct conduit_listener_ops lw_listener_ops = {
    .name = "lwip",
    .accept = ll_accept,
    .destroy = ll_destroy,
    .wait = ll_wait,
    .pending = ll_pending,
};

int cd_lwip_listen(void *state, conduit_ctx *ctx, const conduit_endpoint *ep,
                   conduit_listener **out)
{
	conduit_lwip *st = state;
	ip_addr_t ip;
	conduit_lwip_netif *on = NULL;
	u8_t type = IPADDR_TYPE_ANY;
	if (cd_listen_refuses_connect_to(ctx, ep) != CONDUIT_OK)
		return CONDUIT_ERR_OPTION;
	if (ep->host_kind == CONDUIT_HOST_NONE) {
		ip_addr_copy(ip, *IP_ANY_TYPE);
	} else {
		/* A parsed endpoint carries no addresses yet: literals are
		 * converted here, names looked up (the context's lookup). */
		struct conduit_addr first = {0};
		if (ep->naddrs > 0) {
			first = ep->addrs[0];
		} else {
			conduit_endpoint *looked = conduit_endpoint_dup(ep);
			if (looked == NULL)
				return conduit_ctx_fail(
				    ctx, CONDUIT_ERR_NOMEM,
				    "listen %s: out of memory",
				    cd_endpoint_shown(ep));
			int rc = cd_lookup(ctx, looked);
			if (rc == CONDUIT_OK && looked->naddrs == 0)
				rc = conduit_ctx_fail(ctx, CONDUIT_ERR_RESOLVE,
				                      "listen %s: no address",
				                      cd_endpoint_shown(ep));
			if (rc == CONDUIT_OK)
				first = looked->addrs[0];
			conduit_endpoint_free(looked);
			if (rc != CONDUIT_OK)
				return rc;
		}
		cd_lwip_to_ip(&first, &ip);
		type = IP_IS_V4(&ip) ? IPADDR_TYPE_V4 : IPADDR_TYPE_V6;
		on = cd_lwip_netif_owning(st, &ip);
		if (on == NULL)
			return conduit_ctx_fail(
			    ctx, CONDUIT_ERR_ADDR_UNAVAILABLE,
			    "listen %s: no lwIP netif has this "
			    "address",
			    cd_endpoint_shown(ep));
	}
	struct lw_listener *l = calloc(1, sizeof(*l));
	struct tcp_pcb *pcb = tcp_new_ip_type(type);
	if (l == NULL || pcb == NULL) {
		free(l);
		if (pcb != NULL)
			tcp_close(pcb);
		return conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
		                        "listen %s: out of memory",
		                        cd_endpoint_shown(ep));
	}
	/* Connections it accepts inherit the netif: pinned like ours. */
	if (on != NULL)
		tcp_bind_netif(pcb, &on->nif);
	err_t e = tcp_bind(pcb, &ip, (u16_t)ep->port);
	struct tcp_pcb *lpcb = NULL;
	if (e == ERR_OK) {
		lpcb = tcp_listen_with_backlog_and_err(pcb, LW_BACKLOG, &e);
		if (lpcb == NULL && e == ERR_OK)
			e = ERR_MEM;
	}
	if (lpcb == NULL) {
		tcp_close(pcb);
		free(l);
		return conduit_ctx_fail(ctx,
		                        e == ERR_USE ? CONDUIT_ERR_ADDR_IN_USE
		                                     : CONDUIT_ERR_NOMEM,
		                        "listen %s: %s", cd_endpoint_shown(ep),
		                        cd_lwip_err_text(e));
	}
	/* The bound URI: the endpoint with the port lwIP chose. */
	conduit_endpoint *bound = conduit_endpoint_dup(ep);
	char *uri = NULL;
	if (bound != NULL) {
		bound->port = lpcb->local_port;
		uri = cd_uri_format(bound);
		conduit_endpoint_free(bound);
	}
	int rc = uri != NULL ? conduit_listener_init(&l->base, &lw_listener_ops,
	                                             ctx, uri)
	                     : CONDUIT_ERR_NOMEM;
	free(uri);
	if (rc != CONDUIT_OK) {
		tcp_close(lpcb);
		free(l);
		return conduit_ctx_fail(ctx, CONDUIT_ERR_NOMEM,
		                        "listen %s: out of memory",
		                        cd_endpoint_shown(ep));
	}
	l->st = st;
	l->pcb = lpcb;
	st->npcbs++;
	st->nlisteners++;
	tcp_arg(lpcb, l);
	tcp_accept(lpcb, on_accept);
	*out = &l->base;
	return CONDUIT_OK;
}
