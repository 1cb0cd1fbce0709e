/*
 * listen.c - `conduit listen [--keep] [--echo] URI`: accept, then bridge
 * each connection to standard input and output, or echo it.  The loop
 * (session.c) accepts; here the listener is made and announced, for the
 * relay's too.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

int listener_open(struct prog *p)
{
	const struct opts *o = p->o;
	int rc = conduit_listen(&p->l, p->ctx, o->args[0]);
	if (rc == CONDUIT_ERR_CERT && o->cert == NULL &&
	    strstr(o->args[0], "cert=") == NULL) {
		/* The library refuses a TLS listener with no certificate;
		 * here the certificate is an option. */
		say("listen %s: a TLS server needs a certificate: give "
		    "--cert FILE and --key FILE",
		    o->args[0]);
		return EXIT_USAGE;
	}
	if (rc != CONDUIT_OK) {
		say("%s", conduit_ctx_error(p->ctx));
		/* A certificate or key that does not load is the user's to
		 * fix, as for --cert. */
		return rc == CONDUIT_ERR_CERT ? EXIT_USAGE : setup_exit(rc);
	}
	fprintf(stderr, "listening on %s\n", conduit_listener_uri(p->l));
	return 0;
}

int listen_start(struct prog *p)
{
	p->mode = p->o->echo ? MODE_ECHO : MODE_STDIO;
	p->single = !p->o->keep;
	return listener_open(p);
}
