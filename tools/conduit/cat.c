/*
 * cat.c - `conduit cat URI`: connect; standard input to the flow, the
 * flow to standard output.  When standard input ends the flow is
 * half-closed, and the command exits once both directions have ended.
 */
#include "cli.h"

int cat_start(struct prog *p)
{
	const struct opts *o = p->o;
	p->mode = MODE_CAT;
	conduit_flow *f = NULL;
	conduit_endpoint *ep = NULL;
	if (o->servername != NULL) {
		int status = target_endpoint(p->ctx, o, o->args[0], &ep);
		if (status != 0)
			return status;
	}
	int rc = ep != NULL ? conduit_connect_endpoint(&f, p->ctx, ep)
	                    : conduit_connect(&f, p->ctx, o->args[0]);
	conduit_endpoint_free(ep);
	if (rc != CONDUIT_OK) {
		say("%s", conduit_ctx_error(p->ctx));
		return setup_exit(rc);
	}
	struct session *s = session_new(p);
	if (s == NULL || !session_join(s, false)) {
		conduit_flow_free(f);
		say("out of memory");
		return EXIT_IO;
	}
	s->end[0].flow = f;
	s->end[1].up = true;
	s->nend = 2;
	return 0;
}
