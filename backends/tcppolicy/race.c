/*
 * race.c - the RFC 8305 connect race as a state machine (see
 * tcppolicy.h).  It holds one bit per address (its family) and a few
 * counters; the backend holds the addresses and the attempts.
 */
#include "tcppolicy.h"

#include <stdlib.h>
#include <string.h>

void cd_race_init(struct cd_race *r, uint64_t now, uint32_t timeout_ms,
                  size_t max_inflight)
{
	/* Field by field: every connect runs this, and most of the
	 * structure is never read before it is written. */
	r->deadline = timeout_ms ? now + timeout_ms : UINT64_MAX;
	r->next_start = 0;
	r->naddrs = r->nstarted = r->inflight = 0;
	r->max_inflight =
	    max_inflight == 0 || max_inflight > CD_RACE_MAX_ATTEMPTS
	        ? CD_RACE_MAX_ATTEMPTS
	        : max_inflight;
	r->started = 0;
	r->cursor[0] = r->cursor[1] = CD_RACE_INLINE;
	r->last_family = -1;
	r->complete = r->over = false;
	r->result = CD_RACE_WAIT;
	r->v6 = 0;
	r->more = NULL;
	r->more_words = 0;
}

static int family_of(const struct cd_race *r, size_t i)
{
	if (i < CD_RACE_INLINE)
		return (int)(r->v6 >> i & 1);
	i -= CD_RACE_INLINE;
	return (int)(r->more[i / 64] >> (i % 64) & 1);
}

/* cd_race_add() past the addresses kept inline. */
int cd_race_add_more(struct cd_race *r, int family)
{
	size_t i = r->naddrs - CD_RACE_INLINE;
	if (i / 64 >= r->more_words) {
		size_t words = r->more_words ? r->more_words * 2 : 1;
		uint64_t *m = realloc(r->more, words * sizeof(*m));
		if (m == NULL)
			return CONDUIT_ERR_NOMEM;
		memset(m + r->more_words, 0,
		       (words - r->more_words) * sizeof(*m));
		r->more = m;
		r->more_words = words;
	}
	r->more[i / 64] |= (uint64_t)(family == CD_RACE_V6) << (i % 64);
	r->naddrs++;
	return CONDUIT_OK;
}

void cd_race_complete(struct cd_race *r)
{
	r->complete = true;
}

/* The first address of family past the first CD_RACE_INLINE not started
 * yet, taken; or -1. */
static long take_more(struct cd_race *r, int family)
{
	if (r->naddrs <= CD_RACE_INLINE)
		return -1;
	for (size_t i = r->cursor[family]; i < r->naddrs; i++)
		if (family_of(r, i) == family) {
			r->cursor[family] = i + 1;
			return (long)i;
		}
	r->cursor[family] = r->naddrs;
	return -1;
}

enum cd_race_step cd_race_next_slow(struct cd_race *r, uint64_t now,
                                    size_t *addr)
{
	if (r->over)
		return r->result;
	if (now >= r->deadline) {
		r->over = true;
		r->inflight = 0;
		return r->result = CD_RACE_TIMEOUT;
	}
	if (r->nstarted < r->naddrs && r->inflight < r->max_inflight &&
	    (r->inflight == 0 || now >= r->next_start)) {
		/* Families alternate, IPv6 first; when the one whose turn it
		 * is has nothing left, the other goes on.  Among the first
		 * CD_RACE_INLINE a few bit operations find the address. */
		int want = r->last_family < 0 ? CD_RACE_V6 : !r->last_family;
		uint64_t known = r->naddrs >= CD_RACE_INLINE
		                     ? ~0ull
		                     : (1ull << r->naddrs) - 1;
		uint64_t left = known & ~r->started;
		uint64_t m = left & (want == CD_RACE_V6 ? r->v6 : ~r->v6);
		long i = -1;
		if (m == 0 && r->naddrs > CD_RACE_INLINE)
			i = take_more(r, want);
		if (m == 0 && i < 0) {
			want = !want;
			m = left & (want == CD_RACE_V6 ? r->v6 : ~r->v6);
		}
		if (m != 0) {
			i = __builtin_ctzll(m);
			r->started |= 1ull << i;
		} else if (i < 0) {
			i = take_more(r, want);
		}
		/* nstarted < naddrs: one of the two has an address. */
		r->last_family = want;
		r->nstarted++;
		r->inflight++;
		r->next_start = now + CD_RACE_STAGGER_MS;
		*addr = (size_t)i;
		return CD_RACE_START;
	}
	if (r->inflight == 0 && r->nstarted == r->naddrs && r->complete) {
		r->over = true;
		return r->result = CD_RACE_FAILED;
	}
	return CD_RACE_WAIT;
}

void cd_race_failed(struct cd_race *r)
{
	if (r->inflight > 0)
		r->inflight--;
	/* RFC 8305: a failure starts the next attempt without waiting out
	 * the delay. */
	r->next_start = 0;
}

void cd_race_won(struct cd_race *r)
{
	r->over = true;
	r->inflight = 0;
	r->result = CD_RACE_WAIT;
}

uint64_t cd_race_wake(const struct cd_race *r)
{
	if (r->over)
		return UINT64_MAX;
	uint64_t w = r->deadline;
	/* With every slot taken only an attempt's end frees one: a start
	 * time already passed must not make every wait return at once. */
	if (r->nstarted < r->naddrs && r->inflight < r->max_inflight &&
	    r->next_start < w)
		w = r->next_start;
	return w;
}
