/*
 * main.c - the `conduit` command: the library seen from a shell, in the
 * manner of socat and ncat, and the way the tests drive it from outside.
 *
 *   conduit cat URI                 connect; stdin -> flow, flow -> stdout
 *   conduit listen [--keep] [--echo] URI
 *                                   accept, then bridge to stdin/stdout or
 *                                   echo
 *   conduit relay LISTEN TARGET     accept on LISTEN, connect each to TARGET
 *   conduit resolve URI             the endpoint and the addresses found
 *
 * Options set up the context before any of these runs: TLS (--ca, --cert,
 * --key, --client-auth, --alpn, --insecure: the context's TLS settings)
 * and lwIP (--lwip-tap, --lwip-dgram: the context's TCP on an lwIP stack
 * over a TAP device or a datagram wire to another conduit process).
 * cli.h says which file does what.
 *
 * Only the public API (conduit/conduit.h) is used.
 */
#include "cli.h"
#include "demo.h"
#ifdef CONDUIT_HAVE_TLS
#include <conduit/tls.h>
#endif

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Statuses and messages                                               */

int setup_exit(int rc)
{
	switch (rc) {
	case CONDUIT_ERR_URI:
	case CONDUIT_ERR_SCHEME:
	case CONDUIT_ERR_HOST:
	case CONDUIT_ERR_PORT:
	case CONDUIT_ERR_OPTION:
	case CONDUIT_ERR_RESOLVE:
	case CONDUIT_ERR_PATH_TOO_LONG:
	case CONDUIT_ERR_NO_BACKEND:
		return EXIT_RESOLVE;
	default:
		return EXIT_CONNECT;
	}
}

void say(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n = snprintf(line, sizeof(line), "conduit: ");
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	strcat(line, "\n");
	fputs(line, stderr);
}

/* After a TLS handshake: whom the peer's certificate names, if anyone. */
static void tls_peer(conduit_flow *f, char *buf, size_t len)
{
	buf[0] = '\0';
#ifdef CONDUIT_HAVE_TLS
	char subj[256];
	int rc = conduit_tls_peer_subject(f, subj, sizeof(subj));
	if (rc == CONDUIT_OK)
		snprintf(buf, len, " peer \"%s\"", subj);
	else if (rc == CONDUIT_ERR_NOT_FOUND)
		snprintf(buf, len, " no peer certificate");
	else if (rc == CONDUIT_ERR_CERT)
		snprintf(buf, len, " peer certificate NOT verified");
#else
	(void)f;
	(void)len;
#endif
}

static void observe(void *arg, const struct conduit_event *ev)
{
	(void)arg;
	char st[96] = "", peer[300] = "";
	if (ev->status != CONDUIT_OK)
		snprintf(st, sizeof(st), " [%s]",
		         conduit_status_name(ev->status));
	else if (ev->phase == CONDUIT_PHASE_TLS_HANDSHAKED && ev->flow != NULL)
		tls_peer(ev->flow, peer, sizeof(peer));
	say("%s %s%s%s%s%s%s", conduit_phase_name(ev->phase), ev->uri,
	    ev->detail[0] != '\0' ? " (" : "", ev->detail,
	    ev->detail[0] != '\0' ? ")" : "", peer, st);
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "demo") == 0)
		return conduit_demo(argc - 1, argv + 1);
	struct opts o;
	memset(&o, 0, sizeof(o));
	int status = parse_args(argc, argv, &o);
	if (status >= 0)
		return status;
	if (o.help) {
		fputs(usage_for(o.cmd), stdout);
		return 0;
	}

	conduit_ctx *ctx = NULL;
	if (conduit_ctx_new(&ctx) != CONDUIT_OK) {
		say("out of memory");
		return EXIT_IO;
	}
	if (o.verbose)
		conduit_ctx_set_observer(ctx, observe, NULL);
	/* The URIs on a command line are the user's own: they may name
	 * files and weaken checks, as curl's options do. */
	conduit_ctx_allow_uri_options(ctx,
	                              CONDUIT_URI_FILES | CONDUIT_URI_INSECURE);
	if (o.timeout_ms > 0)
		conduit_ctx_set_connect_timeout(ctx, (uint32_t)o.timeout_ms);
	/* The command opts in to $CONDUIT_RULES; the library never reads
	 * the environment by itself.  secure_getenv: not for setuid runs. */
	const char *rules =
	    o.rules != NULL ? o.rules : secure_getenv("CONDUIT_RULES");
	if (rules != NULL && *rules != '\0' &&
	    conduit_ctx_load_rules(ctx, rules) != CONDUIT_OK) {
		say("%s", conduit_ctx_error(ctx));
		conduit_ctx_free(ctx);
		return EXIT_USAGE;
	}
	if ((status = tls_setup(ctx, &o)) >= 0) {
		conduit_ctx_free(ctx);
		return status;
	}
	void *lwip = NULL;
	if ((o.lwip_tap != NULL || o.lwip_dgram != NULL) &&
	    lwip_setup(ctx, &o, &lwip) != 0) {
		conduit_ctx_free(ctx);
		return EXIT_USAGE;
	}

	if (o.cmd == CMD_RESOLVE)
		status = cmd_resolve(ctx, o.args[0], o.explain);
	else
		status = run(ctx, &o);
	if (lwip != NULL && status < 128)
		lwip_linger(ctx, lwip);
	conduit_ctx_free(ctx);
	lwip_teardown(lwip);

	if (status > 128) {
		/* Interrupted: everything is cleaned up; die of the signal
		 * so the caller sees what happened. */
		signal(status - 128, SIG_DFL);
		raise(status - 128);
		return status;
	}
	return status;
}
