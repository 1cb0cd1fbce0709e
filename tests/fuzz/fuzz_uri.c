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
	struct fz_log a = {0}, b = {0};
	/* The input as it is (a C string: up to its first NUL). */
	char *raw = malloc(size + 1);
	if (raw == NULL)
		abort();
	memcpy(raw, data, size);
	raw[size] = '\0';
	parse_once(raw, &a);
	fz_check_printable(&a);
	free(raw);

	size_t len;
	uint8_t *shaped = fz_secret_uri(data, size, &len);
	if (shaped != NULL) {
		char *ua = fz_with_marker(shaped, len, 0);
		char *ub = fz_with_marker(shaped, len, 1);
		fz_log_reset(&a);
		parse_once(ua, &a);
		parse_once(ub, &b);
		fz_check_printable(&a);
		fz_check_redacted(&a, &b);
		free(ua);
		free(ub);
		free(shaped);
	}
	fz_log_free(&a);
	fz_log_free(&b);
	return 0;
}
