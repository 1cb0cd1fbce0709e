/*
 * vchan_names.c - names for domains, kept in XenStore as ocaml-conduit
 * keeps them (/conduit/NAME holds a domid), and the public naming calls of
 * <conduit/vchan.h>.  A lookup checks that the node is owned by the domain
 * it names; registering is refused where the name is another's.
 */
#include "vcpriv.h"

#include <conduit/vchan.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool valid_name(const char *n)
{
	size_t len = strlen(n);
	bool digits = true;
	if (len == 0 || len > 63)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = n[i];
		if (!(c >= '0' && c <= '9'))
			digits = false;
		if (!(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9') &&
		    c != '-' && c != '_')
			return false;
	}
	return !digits;
}

bool vc_is_domid(const char *s)
{
	return s[0] >= '0' && s[0] <= '9';
}

/* /conduit/NAME -> domid, with the owner check.  Message on ctx. */
int vc_lookup(conduit_ctx *ctx, struct xs_handle *xs, const char *name,
              unsigned *out)
{
	char node[96];
	snprintf(node, sizeof(node), "/conduit/%s", name);
	char *v = xs_read(xs, XBT_NULL, node, NULL);
	if (v == NULL) {
		if (errno == EACCES)
			return conduit_ctx_fail(
			    ctx, CONDUIT_ERR_PERMISSION,
			    "vchan name %s: XenStore refuses "
			    "to let this domain read %s",
			    name, node);
		return conduit_ctx_fail(ctx, CONDUIT_ERR_RESOLVE,
		                        "vchan name %s: no domain registered "
		                        "it (%s: %s)",
		                        name, node, strerror(errno));
	}
	char *end;
	unsigned long d = strtoul(v, &end, 10);
	bool num = *v != '\0' && *end == '\0' && d <= 32751;
	free(v);
	if (!num)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_RESOLVE,
		                        "vchan name %s: %s does not hold a "
		                        "domain id",
		                        name, node);
	unsigned n = 0;
	struct xs_permissions *p = xs_get_permissions(xs, XBT_NULL, node, &n);
	if (p == NULL || n == 0) {
		free(p);
		return conduit_ctx_fail(ctx, CONDUIT_ERR_PERMISSION,
		                        "vchan name %s: cannot read the owner "
		                        "of %s: %s",
		                        name, node, strerror(errno));
	}
	unsigned owner = p[0].id;
	free(p);
	if (owner != d)
		return conduit_ctx_fail(
		    ctx, CONDUIT_ERR_PERMISSION,
		    "vchan name %s: %s names domain %lu but "
		    "is owned by domain %u; refusing it",
		    name, node, d, owner);
	*out = (unsigned)d;
	return CONDUIT_OK;
}

/* Register name for domain self (see vchan.h).  Message on ctx. */
int vc_register_name(conduit_ctx *ctx, struct xs_handle *xs, const char *name,
                     unsigned self)
{
	char node[96], val[16];
	snprintf(node, sizeof(node), "/conduit/%s", name);
	snprintf(val, sizeof(val), "%u", self);
	unsigned d;
	if (vc_lookup(ctx, xs, name, &d) == CONDUIT_OK) {
		if (d == self)
			return CONDUIT_OK;
		return conduit_ctx_fail(ctx, CONDUIT_ERR_ADDR_IN_USE,
		                        "vchan name %s is registered by domain "
		                        "%u",
		                        name, d);
	}
	unsigned n = 0;
	struct xs_permissions *p = xs_get_permissions(xs, XBT_NULL, node, &n);
	if (p != NULL) {
		unsigned owner = n > 0 ? p[0].id : 0;
		free(p);
		return conduit_ctx_fail(ctx, CONDUIT_ERR_ADDR_IN_USE,
		                        "vchan name %s: %s exists, owned by "
		                        "domain %u",
		                        name, node, owner);
	}
	xs_transaction_t t = xs_transaction_start(xs);
	/* The node must not exist: a write would take over one that
	 * appeared since we looked, if we could write it. */
	char *again = t != XBT_NULL ? xs_read(xs, t, node, NULL) : NULL;
	bool ok = t != XBT_NULL && again == NULL &&
	          xs_write(xs, t, node, val, (unsigned)strlen(val));
	int err = errno;
	if (ok) {
		/* Others read it and announce under it; writing is how
		 * ocaml-conduit's clients announce (see README). */
		struct xs_permissions perms[1] = {
		    {self, XS_PERM_READ | XS_PERM_WRITE}};
		ok = xs_set_permissions(xs, t, node, perms, 1);
		err = errno;
	}
	free(again);
	if (t != XBT_NULL)
		xs_transaction_end(xs, t, !ok);
	if (again != NULL)
		return conduit_ctx_fail(
		    ctx, CONDUIT_ERR_ADDR_IN_USE,
		    "vchan name %s was registered meanwhile", name);
	if (!ok)
		return conduit_ctx_fail(ctx,
		                        err == EACCES ? CONDUIT_ERR_PERMISSION
		                                      : CONDUIT_ERR_SYSTEM,
		                        "vchan name %s: cannot write %s: %s",
		                        name, node, strerror(err));
	return CONDUIT_OK;
}

void vc_unregister_name(struct xs_handle *xs, const char *name, unsigned self)
{
	char node[96];
	snprintf(node, sizeof(node), "/conduit/%s", name);
	unsigned n = 0;
	struct xs_permissions *p = xs_get_permissions(xs, XBT_NULL, node, &n);
	/* Only ever remove our own node. */
	if (p != NULL && n > 0 && p[0].id == self)
		xs_rm(xs, XBT_NULL, node);
	free(p);
}

/* ---- The public naming calls -------------------------------------- */

int conduit_vchan_local_domid(conduit_ctx *ctx, unsigned *domid)
{
	if (ctx == NULL || domid == NULL)
		return CONDUIT_ERR_INVALID;
	struct xs_handle *xs = vc_open_xs(ctx, "vchan");
	if (xs == NULL)
		return CONDUIT_ERR_UNSUPPORTED;
	int rc = vc_read_domid(xs, domid) == 0
	             ? CONDUIT_OK
	             : conduit_ctx_fail(ctx, CONDUIT_ERR_UNSUPPORTED,
	                                "vchan: this domain's id is not "
	                                "in XenStore");
	xs_close(xs);
	return rc;
}

int conduit_vchan_register_name(conduit_ctx *ctx, const char *name)
{
	if (ctx == NULL || name == NULL)
		return CONDUIT_ERR_INVALID;
	if (!valid_name(name))
		return conduit_ctx_fail(ctx, CONDUIT_ERR_HOST,
		                        "vchan name \"%.64s\": 1-63 bytes of "
		                        "[a-z0-9_-], not all digits",
		                        name);
	/* Every context has the state (conduit_ctx_new registers vchan),
	 * unless another backend was registered for "vchan" over it. */
	struct vc_state *st = vc_state_of(ctx);
	if (st == NULL)
		return conduit_ctx_fail(ctx, CONDUIT_ERR_NO_BACKEND,
		                        "vchan name %s: this context's vchan "
		                        "transport is not this build's",
		                        name);
	if (strcmp(st->name, name) == 0)
		return CONDUIT_OK;
	struct xs_handle *xs = vc_open_xs(ctx, "vchan");
	if (xs == NULL)
		return CONDUIT_ERR_UNSUPPORTED;
	unsigned self = 0; /* set by vc_read_domid() when it succeeds */
	int rc = vc_read_domid(xs, &self) == 0
	             ? vc_register_name(ctx, xs, name, self)
	             : conduit_ctx_fail(ctx, CONDUIT_ERR_UNSUPPORTED,
	                                "vchan: this domain's id is not "
	                                "in XenStore");
	if (rc == CONDUIT_OK && st->name[0] != '\0')
		vc_unregister_name(xs, st->name, st->domid);
	if (rc == CONDUIT_OK) {
		snprintf(st->name, sizeof(st->name), "%s", name);
		st->domid = self;
		st->ctx = ctx;
	}
	xs_close(xs);
	return rc;
}

int conduit_vchan_unregister_name(conduit_ctx *ctx)
{
	if (ctx == NULL)
		return CONDUIT_ERR_INVALID;
	struct vc_state *st = vc_state_of(ctx);
	if (st == NULL || st->name[0] == '\0')
		return CONDUIT_OK;
	struct xs_handle *xs = vc_open_xs(ctx, "vchan");
	if (xs == NULL)
		return CONDUIT_ERR_UNSUPPORTED;
	vc_unregister_name(xs, st->name, st->domid);
	st->name[0] = '\0';
	xs_close(xs);
	return CONDUIT_OK;
}

int conduit_vchan_lookup(conduit_ctx *ctx, const char *name, unsigned *domid)
{
	if (ctx == NULL || name == NULL || domid == NULL)
		return CONDUIT_ERR_INVALID;
	if (!valid_name(name))
		return conduit_ctx_fail(ctx, CONDUIT_ERR_HOST,
		                        "vchan name \"%.64s\": 1-63 bytes of "
		                        "[a-z0-9_-], not all digits",
		                        name);
	struct xs_handle *xs = vc_open_xs(ctx, "vchan");
	if (xs == NULL)
		return CONDUIT_ERR_UNSUPPORTED;
	int rc = vc_lookup(ctx, xs, name, domid);
	xs_close(xs);
	return rc;
}
