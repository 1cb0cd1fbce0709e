/*
 * pattern.c - the byte pattern every receiver checks (see common.h).
 */
#include "common.h"

#include <string.h>

#define PAT_MUL 0x9e3779b97f4a7c15u
#define PAT_ADD 0x5851f42d4c957f2du

static uint64_t pat_word(uint64_t index)
{
	return index * PAT_MUL + PAT_ADD;
}

static unsigned char pat_byte(uint64_t off)
{
	uint64_t w = pat_word(off >> 3);
	unsigned char b[8];
	memcpy(b, &w, sizeof(b));
	return b[off & 7];
}

void tool_pat_fill(unsigned char *p, size_t len, uint64_t off)
{
	size_t k = 0;
	for (; k < len && ((off + k) & 7) != 0; k++)
		p[k] = pat_byte(off + k);
	uint64_t w = pat_word((off + k) >> 3);
	for (; len - k >= 8; k += 8, w += PAT_MUL)
		memcpy(p + k, &w, 8);
	for (; k < len; k++)
		p[k] = pat_byte(off + k);
}

uint64_t tool_pat_check(const unsigned char *p, size_t len, uint64_t off)
{
	size_t k = 0;
	for (; k < len && ((off + k) & 7) != 0; k++)
		if (p[k] != pat_byte(off + k))
			return off + k;
	uint64_t w = pat_word((off + k) >> 3);
	while (len - k >= 8) {
		/* OR the differences of a block together (the compiler can
		 * vectorise that) and look closer only when it is not 0. */
		size_t blk = (len - k) & ~(size_t)7;
		if (blk > 4096)
			blk = 4096;
		uint64_t diff = 0;
		for (size_t j = 0; j < blk; j += 8, w += PAT_MUL) {
			uint64_t got;
			memcpy(&got, p + k + j, 8);
			diff |= got ^ w;
		}
		if (diff != 0)
			for (size_t j = 0; j < blk; j++)
				if (p[k + j] != pat_byte(off + k + j))
					return off + k + j;
		k += blk;
	}
	for (; k < len; k++)
		if (p[k] != pat_byte(off + k))
			return off + k;
	return UINT64_MAX;
}
