/*
 * builtin.c - the backends this build contains, as data: the one file of
 * the core that names a backend.  conduit_ctx_new() registers each in
 * turn through conduit_ctx_register(), the path every backend takes; each
 * declares the per-context state it needs (struct conduit_backend's
 * state_size and attach), so the core allocates and frees it without
 * knowing what it holds.  lwIP is not here: a context chooses it at run
 * time (conduit_ctx_use_lwip), through the same registration.
 */
#include "core.h"

#ifdef CONDUIT_HAVE_UNIX
extern const struct conduit_backend cd_backend_unix;
#endif
#ifdef CONDUIT_HAVE_TCP
extern const struct conduit_backend cd_backend_tcp;
#endif
#ifdef CONDUIT_HAVE_TLS
extern const struct conduit_backend cd_backend_tls;
#endif
#ifdef CONDUIT_HAVE_VCHAN
extern const struct conduit_backend cd_backend_vchan;
#endif

const struct conduit_backend *const cd_builtin_backends[] = {
#ifdef CONDUIT_HAVE_UNIX
    &cd_backend_unix,
#endif
#ifdef CONDUIT_HAVE_TCP
    &cd_backend_tcp,
#endif
#ifdef CONDUIT_HAVE_TLS
    &cd_backend_tls,
#endif
#ifdef CONDUIT_HAVE_VCHAN
    &cd_backend_vchan,
#endif
    NULL,
};
