/*
 * fuzz_uri.c - the URI parser.  On every input: parse, and when it parses,
 * the canonical form parses again to an equal endpoint that prints the
 * same (the round trip as a property); whatever is shown is printable; and
 * a URI built around a secret value shows the same thing whatever the
 * value, and never the value.
 */
#include "core.h"
#include "fuzzkit.h"

#include <stdlib.h>
#include <string.h>

static void parse_once(const char *uri, struct fz_log *log)
{
	char err[512];
	conduit_endpoint *ep = NULL;
	int rc = conduit_endpoint_parse(&ep, uri, err, sizeof(err));
	fz_log_add(log, "status", conduit_status_name(rc));
	if (rc != CONDUIT_OK) {
		fz_log_add(log, "error", err);
		return;
	}
	fz_log_add(log, "shown", cd_endpoint_shown(ep));
	const char *canon = conduit_endpoint_uri(ep);
	conduit_endpoint *again = NULL;
	rc = conduit_endpoint_parse(&again, canon, err, sizeof(err));
	if (rc != CONDUIT_OK) {
		fz_show("input", uri);
		fz_show("canonical", canon);
		fz_show("reparse", err);
		abort();
	}
	if (!conduit_endpoint_equal(ep, again) ||
	    strcmp(canon, conduit_endpoint_uri(again)) != 0) {
		fz_show("input", uri);
		fz_show("canonical", canon);
		fz_show("again", conduit_endpoint_uri(again));
		abort();
	}
	conduit_endpoint_free(again);
	conduit_endpoint_free(ep);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fz_check_uri_input(data, size, parse_once);
	return 0;
}
