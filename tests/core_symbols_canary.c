/*
 * core_symbols_canary.c - a core-like object that calls into a backend,
 * as core files once did: tests/core-symbols must refuse it.  Compiled,
 * never linked or run.
 */
void *cd_tls_state_new(void);
void *core_symbols_canary(void);

void *core_symbols_canary(void)
{
	return cd_tls_state_new();
}
