/*
 * lwip_port.c - lwIP's port to conduit's platform contract.  A NO_SYS
 * build of lwIP needs from its platform only a millisecond clock
 * (sys_now) and random numbers (LWIP_RAND and the TCP initial sequence
 * numbers, see backends/lwip/lwipopts.h); both come from platform.h, so a
 * port that implements the contract has lwIP's too.
 *
 * Compiled into the lwIP archive, not into libconduit: an application
 * that links its own lwIP brings its own sys_now.
 */
#include <conduit/platform.h>

#include "lwip/ip_addr.h"
#include "lwip/sys.h"

#include <string.h>

u32_t sys_now(void)
{
	return (u32_t)conduit_platform_now_ms();
}

/* Entropy is read 64 bytes at a time: lwIP asks for 4 per local port,
 * DNS query and sequence-number key. */
static uint8_t rand_buf[64];
static size_t rand_left;
static uint32_t rand_fallback = 0x6b43a9b5u;

uint32_t conduit_lwip_rand(void)
{
	uint32_t v;
	if (rand_left < sizeof(v)) {
		if (conduit_platform_entropy(rand_buf, sizeof(rand_buf)) != 0) {
			/* No entropy: never stop the stack for it.  A
			 * xorshift over the clock keeps values varied, but
			 * they are guessable; the platform contract says the
			 * source must not fail. */
			rand_fallback ^= (uint32_t)conduit_platform_now_ms();
			rand_fallback ^= rand_fallback << 13;
			rand_fallback ^= rand_fallback >> 17;
			rand_fallback ^= rand_fallback << 5;
			return rand_fallback;
		}
		rand_left = sizeof(rand_buf);
	}
	rand_left -= sizeof(v);
	memcpy(&v, rand_buf + rand_left, sizeof(v));
	memset(rand_buf + rand_left, 0, sizeof(v));
	return v;
}

/* SipHash-2-4 (Aumasson and Bernstein) of len bytes. */
#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                               \
	do {                                                                   \
		v0 += v1;                                                      \
		v1 = ROTL(v1, 13);                                             \
		v1 ^= v0;                                                      \
		v0 = ROTL(v0, 32);                                             \
		v2 += v3;                                                      \
		v3 = ROTL(v3, 16);                                             \
		v3 ^= v2;                                                      \
		v0 += v3;                                                      \
		v3 = ROTL(v3, 21);                                             \
		v3 ^= v0;                                                      \
		v2 += v1;                                                      \
		v1 = ROTL(v1, 17);                                             \
		v1 ^= v2;                                                      \
		v2 = ROTL(v2, 32);                                             \
	} while (0)

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t siphash24(const uint64_t key[2], const uint8_t *in, size_t len)
{
	uint64_t v0 = 0x736f6d6570736575ull ^ key[0];
	uint64_t v1 = 0x646f72616e646f6dull ^ key[1];
	uint64_t v2 = 0x6c7967656e657261ull ^ key[0];
	uint64_t v3 = 0x7465646279746573ull ^ key[1];
	const uint8_t *end = in + (len - len % 8);
	for (; in != end; in += 8) {
		uint64_t m = le64(in);
		v3 ^= m;
		SIPROUND;
		SIPROUND;
		v0 ^= m;
	}
	uint64_t b = (uint64_t)len << 56;
	for (size_t i = 0; i < len % 8; i++)
		b |= (uint64_t)in[i] << (8 * i);
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

static size_t put_ip(uint8_t *p, const ip_addr_t *ip)
{
#if LWIP_IPV6
	if (IP_IS_V6(ip)) {
		memcpy(p, ip_2_ip6(ip)->addr, 16);
		return 16;
	}
#endif
	memcpy(p, &ip_2_ip4(ip)->addr, 4);
	return 4;
}

/*
 * RFC 6528: the initial sequence number of a connection is a clock that
 * ticks every 4 microseconds plus a keyed hash of the connection's
 * addresses and ports, the key drawn from the platform's entropy once.
 * Unpredictable to anyone off the path, and still increasing for one
 * address pair, as TCP expects when a port pair is used again.
 */
uint32_t conduit_lwip_tcp_isn(const void *local_ip, uint16_t local_port,
                              const void *remote_ip, uint16_t remote_port)
{
	static uint64_t key[2];
	static int keyed;
	if (!keyed) {
		for (int i = 0; i < 2; i++)
			key[i] = (uint64_t)conduit_lwip_rand() << 32 |
			         conduit_lwip_rand();
		keyed = 1;
	}
	uint8_t in[2 * 16 + 4];
	size_t n = put_ip(in, local_ip);
	n += put_ip(in + n, remote_ip);
	in[n++] = (uint8_t)(local_port >> 8);
	in[n++] = (uint8_t)local_port;
	in[n++] = (uint8_t)(remote_port >> 8);
	in[n++] = (uint8_t)remote_port;
	uint32_t clock = (uint32_t)(conduit_platform_now_ms() * 250u);
	return clock + (uint32_t)siphash24(key, in, n);
}
