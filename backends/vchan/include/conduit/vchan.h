/*
 * vchan.h - what the Xen vchan backend adds to the public API.
 *
 * URIs: vchan://DOMID/PORT and vchan://NAME/PORT (see conduit.h and the
 * README's "Xen vchan" section for the XenStore layout).  Everything else
 * goes through the ordinary calls; these are for naming.
 */
#ifndef CONDUIT_VCHAN_H
#define CONDUIT_VCHAN_H

#include <conduit/conduit.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * This domain's id, read from XenStore ("domid" under its own
 * /local/domain node).  CONDUIT_OK with *domid set, or
 * CONDUIT_ERR_UNSUPPORTED (message on ctx) when XenStore is unreachable.
 */
int conduit_vchan_local_domid(conduit_ctx *ctx, unsigned *domid);

/*
 * Register name for this domain: /conduit/NAME holds its domid, owned by
 * it and read-only to others except for announcements (see README).
 * Registering a name this domain already holds is a no-op.  Clients of
 * this context announce themselves under that name from then on (without
 * one they use "dom<ID>").  Errors: CONDUIT_ERR_HOST for a name outside
 * [a-z0-9_-]{1,63} or all digits; CONDUIT_ERR_ADDR_IN_USE when another
 * domain holds the name; CONDUIT_ERR_PERMISSION when XenStore refuses.
 * The name is removed when the context is freed or by
 * conduit_vchan_unregister_name().
 */
int conduit_vchan_register_name(conduit_ctx *ctx, const char *name);
int conduit_vchan_unregister_name(conduit_ctx *ctx);

/*
 * The domid a name stands for, with the owner check connecting does: the
 * node /conduit/NAME must exist (else CONDUIT_ERR_RESOLVE) and be owned
 * by the domain its value names (else CONDUIT_ERR_PERMISSION).
 */
int conduit_vchan_lookup(conduit_ctx *ctx, const char *name, unsigned *domid);

#ifdef __cplusplus
}
#endif
#endif
