/*
 * mbedtls_config_conduit.h - conduit's changes to mbedTLS's default
 * configuration, for the mbedTLS that the build compiles in
 * (cmake/Mbedtls.cmake).  mbedTLS reads it at the end of its own
 * configuration (MBEDTLS_USER_CONFIG_FILE), in the library and in every
 * file of conduit that includes an mbedTLS header, so both agree.
 *
 * Two profiles:
 * - host (the default): what Debian's build of mbedTLS 2.28 adds to the
 *   defaults, so that TLS behaves as it did on Debian's libmbedtls: the
 *   same features, entropy sources and threading, and the same structure
 *   layouts (a program that also loads Debian's shared libmbedtls, such as
 *   conduit-bench through libnng, meets the same structures);
 * - unikernel (CONDUIT_MBEDTLS_UNIKERNEL): no files, sockets, threads,
 *   timers or signals, and no entropy or clock from an operating system.
 *   Entropy comes from conduit's platform contract (the TLS layer adds it
 *   as the strong source), the time from mbedtls_platform_set_time(),
 *   which the platform's port calls with its wall clock; until it does,
 *   certificates are checked against time 0 and fail as not yet valid.
 */
#ifndef CONDUIT_MBEDTLS_CONFIG_H
#define CONDUIT_MBEDTLS_CONFIG_H

#if !defined(CONDUIT_MBEDTLS_UNIKERNEL)

/* Debian 12's debian/rules for mbedtls 2.28.3 turns these on. */
#define MBEDTLS_DEPRECATED_WARNING
#define MBEDTLS_HAVEGE_C
#define MBEDTLS_MD2_C
#define MBEDTLS_MD4_C
#define MBEDTLS_THREADING_C
#define MBEDTLS_THREADING_PTHREAD
#define MBEDTLS_CMAC_C
#define MBEDTLS_SSL_DTLS_SRTP

#else

/* Files: certificates and keys come from memory. */
#undef MBEDTLS_FS_IO
#undef MBEDTLS_PSA_ITS_FILE_C
#undef MBEDTLS_PSA_CRYPTO_STORAGE_C
/* Sockets: conduit's flows carry the records. */
#undef MBEDTLS_NET_C
/* Threads: a unikernel runs one. */
#undef MBEDTLS_THREADING_C
#undef MBEDTLS_THREADING_PTHREAD
/* Timers and the cycle counter (signals, gettimeofday). */
#undef MBEDTLS_TIMING_C
#undef MBEDTLS_HAVEGE_C
/* The self tests print. */
#undef MBEDTLS_SELF_TEST
/* Entropy and time from the platform, not the OS. */
#define MBEDTLS_NO_PLATFORM_ENTROPY
#define MBEDTLS_PLATFORM_TIME_ALT

#endif

#endif
