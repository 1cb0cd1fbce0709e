/*
 * tls_opts.c - the TLS options of `conduit` (--ca, --cert, --key,
 * --key-password-env, --client-auth, --alpn, --insecure): the context's
 * trust, identity and checks; and --servername, the endpoint with
 * servername=NAME.
 */
#include "cli.h"
#ifdef CONDUIT_HAVE_TLS
#include <conduit/tls.h>
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* TLS options: the context's trust, identity and checks               */

#ifdef CONDUIT_HAVE_TLS
/* A file an option names must exist and be readable: say which and why
 * here, before mbedTLS reduces it to "read/write of file failed". */
static bool readable(const char *opt, const char *path, bool dir_ok)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		say("%s %s: %s", opt, path, strerror(errno));
		return false;
	}
	if (S_ISDIR(st.st_mode) && !dir_ok) {
		say("%s %s: is a directory, not a file", opt, path);
		return false;
	}
	/* O_NONBLOCK: a FIFO named by mistake must not hang the command. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK |
	                        (S_ISDIR(st.st_mode) ? O_DIRECTORY : 0));
	if (fd < 0) {
		say("%s %s: %s", opt, path, strerror(errno));
		return false;
	}
	close(fd);
	return true;
}

/* The password of an encrypted key: arg is the value of the variable
 * --key-password-env names. */
static int key_password(char *buf, size_t size, const char *key, void *arg)
{
	(void)key;
	size_t n = strlen(arg);
	if (n > size || n > INT_MAX)
		return -1;
	memcpy(buf, arg, n);
	return (int)n;
}

int tls_setup(conduit_ctx *ctx, const struct opts *o)
{
	if (o->ca != NULL) {
		if (!readable("--ca", o->ca, true))
			return EXIT_USAGE;
		if (conduit_tls_set_ca_file(ctx, o->ca) != CONDUIT_OK) {
			say("--ca %s: %s", o->ca, conduit_ctx_error(ctx));
			return EXIT_USAGE;
		}
	}
	if (o->pass_env != NULL) {
		/* A password on the command line would show in ps(1); the
		 * environment is private to the process.  Through the
		 * callback it serves --key and key= options alike. */
		const char *pass = secure_getenv(o->pass_env);
		if (pass == NULL) {
			say("--key-password-env %s: no such variable in the "
			    "environment",
			    o->pass_env);
			return EXIT_USAGE;
		}
		conduit_tls_set_password_cb(ctx, key_password, (void *)pass);
	}
	if (o->cert != NULL) {
		/* Without --key, the key is in the certificate's file (as
		 * curl and openssl s_server have it). */
		const char *key = o->key != NULL ? o->key : o->cert;
		if (!readable("--cert", o->cert, false) ||
		    (o->key != NULL && !readable("--key", key, false)))
			return EXIT_USAGE;
		if (conduit_tls_set_cert_file(ctx, o->cert, key, NULL) !=
		    CONDUIT_OK) {
			say("--cert %s, --key %s: %s", o->cert, key,
			    conduit_ctx_error(ctx));
			return EXIT_USAGE;
		}
	}
	if (o->client_auth >= 0) {
		static const int mode[] = {CONDUIT_TLS_VERIFY_NONE,
		                           CONDUIT_TLS_VERIFY_OPTIONAL,
		                           CONDUIT_TLS_VERIFY_REQUIRED};
		if (conduit_tls_set_client_auth(ctx, mode[o->client_auth]) !=
		    CONDUIT_OK) {
			say("--client-auth: %s", conduit_ctx_error(ctx));
			return EXIT_USAGE;
		}
	}
	if (o->alpn != NULL) {
		/* alpn_ok() has checked the list: at most ALPN_MAX names. */
		char buf[ALPN_MAX * 256];
		const char *names[ALPN_MAX + 1];
		size_t n = 0;
		snprintf(buf, sizeof(buf), "%s", o->alpn);
		for (char *p = buf, *save = NULL;
		     (p = strtok_r(p, ",", &save)) != NULL && n < ALPN_MAX;
		     p = NULL)
			names[n++] = p;
		names[n] = NULL;
		if (conduit_tls_set_alpn(ctx, names) != CONDUIT_OK) {
			say("--alpn %s: %s", o->alpn, conduit_ctx_error(ctx));
			return EXIT_USAGE;
		}
	}
	if (o->timeout_ms > 0)
		conduit_tls_set_handshake_timeout(ctx, (uint32_t)o->timeout_ms);
	if (o->insecure) {
		if (conduit_tls_insecure_no_verify(ctx, 1) != CONDUIT_OK) {
			say("--insecure: %s", conduit_ctx_error(ctx));
			return EXIT_USAGE;
		}
		say("warning: --insecure: certificates are not checked; the "
		    "peer is not authenticated and anyone on the path can "
		    "read and change the connection");
	}
	return -1;
}
#else
int tls_setup(conduit_ctx *ctx, const struct opts *o)
{
	(void)ctx;
	if (o->ca == NULL && o->cert == NULL && o->alpn == NULL &&
	    o->client_auth < 0 && !o->insecure)
		return -1;
	say("TLS options: this build has no TLS (CONDUIT_WITH_TLS=OFF)");
	return EXIT_USAGE;
}
#endif

/* ------------------------------------------------------------------ */
/* --servername: the endpoint with servername=NAME                     */

/*
 * Resolve uri (into *ep) and, with --servername, replace the endpoint by
 * the same endpoint with servername=NAME: the canonical URI with any
 * servername= pair dropped and the new one added.  Returns 0, or an exit
 * status after saying why.
 */
int target_endpoint(conduit_ctx *ctx, const struct opts *o, const char *uri,
                    conduit_endpoint **ep)
{
	*ep = NULL;
	int rc = conduit_resolve(ep, ctx, uri);
	if (rc != CONDUIT_OK) {
		say("%s", conduit_ctx_error(ctx));
		return setup_exit(rc);
	}
	if (o->servername == NULL)
		return 0;
	bool tls = false;
	for (size_t i = 0; i < conduit_endpoint_layer_count(*ep); i++)
		tls |= strcmp(conduit_endpoint_layer(*ep, i), "tls") == 0;
	if (!tls) {
		say("--servername: %s is not TLS (it resolves to %s)", uri,
		    conduit_endpoint_uri(*ep));
		conduit_endpoint_free(*ep);
		*ep = NULL;
		return EXIT_USAGE;
	}
	const char *cu = conduit_endpoint_uri(*ep);
	size_t ql = strcspn(cu, "?");
	size_t cap = strlen(cu) + strlen(o->servername) + 16;
	char *nu = malloc(cap);
	if (nu == NULL) {
		say("out of memory");
		return EXIT_IO;
	}
	memcpy(nu, cu, ql);
	size_t n = ql;
	char sep = '?';
	for (const char *p = cu[ql] == '?' ? cu + ql + 1 : NULL; p != NULL;) {
		const char *amp = strchr(p, '&');
		size_t pl = amp != NULL ? (size_t)(amp - p) : strlen(p);
		if (strncmp(p, "servername=", 11) != 0) {
			nu[n++] = sep;
			memcpy(nu + n, p, pl);
			n += pl;
			sep = '&';
		}
		p = amp != NULL ? amp + 1 : NULL;
	}
	snprintf(nu + n, cap - n, "%cservername=%s", sep, o->servername);
	char msg[512];
	conduit_endpoint *named = NULL;
	rc = conduit_endpoint_parse(&named, nu, msg, sizeof(msg));
	free(nu);
	conduit_endpoint_free(*ep);
	*ep = named;
	if (rc != CONDUIT_OK) {
		say("--servername: %s", msg);
		return EXIT_USAGE;
	}
	return 0;
}
