/*
 * arch/cc.h - the compiler and C library lwIP is built for, as lwIP's
 * lwip/arch.h asks every port to say.  A hosted C library with <stdint.h>,
 * so lwIP's defaults hold (its integer types, and assertions that print
 * and abort), apart from byte order: the C library's htons() and friends
 * are used, so that lwIP's headers and <arpa/inet.h> can meet in one file.
 */
#ifndef CONDUIT_LWIP_ARCH_CC_H
#define CONDUIT_LWIP_ARCH_CC_H

#include <sys/types.h>
#define LWIP_DONT_PROVIDE_BYTEORDER_FUNCTIONS

#endif
