/*
 * lwpriv.h - private to the lwIP backend: the pieces that must not see
 * lwIP's headers (which define names Linux's network headers use too).
 */
#ifndef CONDUIT_LWPRIV_H
#define CONDUIT_LWPRIV_H

#include <stddef.h>

/*
 * Open (or make) the TAP device name, without packet information and
 * non-blocking.  Returns the descriptor, or -1 with errno set.
 */
int cd_lwip_tap_open(const char *name);

#endif
