/*
 * vcpriv.h - what the vchan backend's files share: the context's vchan
 * state and the XenStore calls both the transport (vchan.c) and the
 * naming (vchan_names.c) make.
 */
#ifndef CONDUIT_VCPRIV_H
#define CONDUIT_VCPRIV_H

#include "core.h"

#include <stdbool.h>
#include <xenstore.h>

/* A context's vchan state (allocated by the context: state_size). */
struct vc_state {
	char name[64]; /* registered name, "" if none */
	unsigned domid;
	conduit_ctx *ctx;
};

/* vchan.c: a XenStore handle, or NULL with the message on ctx naming
 * what; this domain's id in *out (0), or -1 when XenStore does not say;
 * the context's vchan state, NULL when vchan is not its transport. */
struct xs_handle *vc_open_xs(conduit_ctx *ctx, const char *what);
int vc_read_domid(struct xs_handle *xs, unsigned *out);
struct vc_state *vc_state_of(conduit_ctx *ctx);

/* vchan_names.c: whether a URI's domain is an id rather than a name;
 * /conduit/NAME to a domid, with the owner check (message on ctx);
 * registering a name for domain self (see vchan.h; message on ctx) and
 * removing it. */
bool vc_is_domid(const char *s);
int vc_lookup(conduit_ctx *ctx, struct xs_handle *xs, const char *name,
              unsigned *out);
int vc_register_name(conduit_ctx *ctx, struct xs_handle *xs, const char *name,
                     unsigned self);
void vc_unregister_name(struct xs_handle *xs, const char *name, unsigned domid);

#endif
