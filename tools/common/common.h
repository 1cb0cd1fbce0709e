/*
 * common.h - what the command, the demo and the benchmark share, each in
 * one copy: a monotonic clock, the byte pattern every receiver checks,
 * removing a temporary tree, catching the signals that end a run, and
 * where the Xen emulation is.  The in-memory certificate maker, which
 * needs mbedTLS, is in certs.h.
 */
#ifndef CONDUIT_TOOLS_COMMON_H
#define CONDUIT_TOOLS_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* The monotonic clock in nanoseconds, milliseconds and microseconds. */
uint64_t tool_now_ns(void);
uint64_t tool_now_ms(void);
double tool_now_us(void);

/*
 * The byte pattern.  Word i of the stream (bytes 8i to 8i + 7) is
 * i * MUL + ADD in native byte order (both ends run on this machine).
 * Every word differs from every other, so a lost, repeated or shifted
 * piece shows, and both making and checking cost one add per 8 bytes, so
 * verification does not dominate what is measured.
 */
/* The stream's bytes [off, off + len), at any alignment. */
void tool_pat_fill(unsigned char *p, size_t len, uint64_t off);
/* Check len bytes found at stream offset off (any alignment): the offset
 * of the first wrong byte, or UINT64_MAX when all are right. */
uint64_t tool_pat_check(const unsigned char *p, size_t len, uint64_t off);

/* Remove path and everything below it, as far as it goes (best effort,
 * no links followed). */
void tool_rmtree(const char *path);

/* SIGINT, SIGTERM and SIGHUP call handler (no flags, nothing blocked);
 * with ignore_pipe, SIGPIPE is ignored too, so that a peer gone away is
 * an EPIPE to report rather than a silent death. */
void tool_catch_signals(void (*handler)(int), int ignore_pipe);

/* The directory of the hypervisor emulation in stubs/xen that child
 * processes put first on their library path: $CONDUIT_XEN_EMULATION when
 * set, else the one this build made; "" when there is none. */
const char *tool_xen_emulation_dir(void);

#endif
