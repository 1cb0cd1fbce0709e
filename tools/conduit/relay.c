/*
 * relay.c - `conduit relay LISTEN_URI TARGET_URI`: for each connection
 * accepted on LISTEN_URI, connect to TARGET_URI (resolved once, at start)
 * and copy both ways; the loop (session.c) makes the connections.
 */
#include "cli.h"

int relay_start(struct prog *p)
{
	p->mode = MODE_RELAY;
	/* Resolve the target first: a bad target URI is a usage problem to
	 * report before anyone connects. */
	int status = target_endpoint(p->ctx, p->o, p->o->args[1], &p->target);
	if (status != 0)
		return status;
	return listener_open(p);
}
