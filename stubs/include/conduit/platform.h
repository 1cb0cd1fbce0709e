/*
 * platform.h - what conduit needs from the platform it runs on.
 *
 * A Unix process gets these from stubs/platform_posix.c.  A unikernel links
 * its own implementation instead (its clock, its entropy source); nothing
 * else in conduit touches the clock or a random source directly.
 */
#ifndef CONDUIT_PLATFORM_H
#define CONDUIT_PLATFORM_H

#include <stddef.h>
#include <stdint.h>

/* Milliseconds on a clock that never goes backwards. */
uint64_t conduit_platform_now_ms(void);

/* Fill buf with len unpredictable bytes; 0 on success, -1 on failure. */
int conduit_platform_entropy(void *buf, size_t len);

#endif
