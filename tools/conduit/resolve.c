/*
 * resolve.c - `conduit resolve [--explain] URI`: the canonical endpoint
 * URI and the addresses found, as a connect would resolve them.
 */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int cmd_resolve(conduit_ctx *ctx, const char *uri, bool explain)
{
	conduit_endpoint *ep = NULL;
	conduit_explain *x = NULL;
	int rc = explain ? conduit_resolve_explain(&ep, &x, ctx, uri)
	                 : conduit_resolve(&ep, ctx, uri);
	for (size_t i = 0; i < conduit_explain_count(x); i++)
		printf("  %s\n", conduit_explain_step(x, i));
	conduit_explain_free(x);
	if (rc != CONDUIT_OK) {
		fflush(stdout);
		say("%s", conduit_ctx_error(ctx));
		return setup_exit(rc);
	}
	printf("%s\n", conduit_endpoint_uri(ep));
	for (size_t i = 0; i < conduit_endpoint_address_count(ep); i++) {
		char buf[128];
		printf("  address %s\n",
		       conduit_addr_format(conduit_endpoint_address(ep, i), buf,
		                           sizeof(buf)));
	}
	conduit_endpoint_free(ep);
	if (fflush(stdout) != 0) {
		say("write standard output: %s", strerror(errno));
		return EXIT_IO;
	}
	return 0;
}
