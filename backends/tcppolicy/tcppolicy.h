/*
 * tcppolicy.h - how a connection is made, written once for every stack
 * that makes one (host sockets, lwIP), so that a URI behaves the same
 * whichever stack the context uses.
 *
 * The race (race.c) is the RFC 8305 connect race as a state machine with
 * no I/O and no clock of its own: it decides the order of the addresses
 * (families alternate, IPv6 first, each family in the order it came, RFC
 * 8305 section 4), when the next attempt starts (CD_RACE_STAGGER_MS after
 * the previous one, or at once when the previous one fails; at most
 * max_inflight at a time), and when to give up (every address failed, or
 * the connect timeout passed).  The backend owns the attempts themselves
 * (descriptors, pcbs) and tells the race how they end.  Addresses may be
 * added while the race runs, one lookup answer at a time; the race only
 * reports failure once cd_race_complete() said that no more are coming.
 *
 * A backend drives it so:
 *
 *   cd_race_init(&r, now, timeout_ms, slots);
 *   cd_race_add(&r, family) for each address known (index 0, 1, ...);
 *   cd_race_complete(&r) once the lookup is over (may be at once);
 *   on every turn, after reporting attempts that ended with
 *   cd_race_failed() (or the winner with cd_race_won()):
 *     while ((step = cd_race_next(&r, now, &i)) == CD_RACE_START)
 *         start an attempt on address i (if it fails at once,
 *         cd_race_failed(&r) and go on);
 *     CD_RACE_TIMEOUT: close every attempt, fail "timed out";
 *     CD_RACE_FAILED: fail with the last attempt's error;
 *     CD_RACE_WAIT: sleep until an attempt ends, an address is added, or
 *     cd_race_wake(&r).
 *   cd_race_fini(&r).
 *
 * The TCP options (tcpopts.c) are the endpoint's nodelay=, keepalive= and
 * source= read once, with the keepalive timers both stacks set.
 */
#ifndef CONDUIT_TCPPOLICY_H
#define CONDUIT_TCPPOLICY_H

#include "core.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* RFC 8305's "Connection Attempt Delay": the next address starts this
 * long after the previous one unless that one fails first. */
#define CD_RACE_STAGGER_MS 250
/* Attempts in flight at once, at most; more addresses wait for a free
 * slot. */
#define CD_RACE_MAX_ATTEMPTS 8
/* Addresses whose family the race keeps without allocating. */
#define CD_RACE_INLINE 64

/* The family of an address as the race sees it: IPv6, or anything else
 * (IPv4; a Unix socket path, which has no other family to alternate
 * with). */
#define CD_RACE_OTHER 0
#define CD_RACE_V6    1

enum cd_race_step {
	CD_RACE_WAIT,    /* nothing to do until cd_race_wake() or an event */
	CD_RACE_START,   /* start an attempt on the address given, now */
	CD_RACE_FAILED,  /* every address failed and no more are coming */
	CD_RACE_TIMEOUT, /* the connect timeout passed: close every attempt */
};

struct cd_race {
	uint64_t deadline;   /* UINT64_MAX: none */
	uint64_t next_start; /* the next attempt may start from then */
	size_t naddrs;       /* addresses added */
	size_t nstarted;     /* attempts started (each on its own address) */
	size_t inflight;     /* attempts started and not yet ended */
	size_t max_inflight;
	/* Bit i: address i (of the first CD_RACE_INLINE) has started. */
	uint64_t started;
	/* Per family, past the first CD_RACE_INLINE: every address of that
	 * family before this index has started (each family is tried in
	 * its own order). */
	size_t cursor[2];
	int last_family; /* of the last attempt started; -1 before any */
	bool complete;   /* no more addresses are coming */
	bool over;       /* won, failed or timed out */
	enum cd_race_step result; /* once over: what cd_race_next() says */
	/* Bit i: address i is IPv6.  The first CD_RACE_INLINE in the word,
	 * the rest in more[] (allocated only for that many). */
	uint64_t v6;
	uint64_t *more;
	size_t more_words;
};

/* Start a race at time now (ms) that gives up timeout_ms later (0: never)
 * with at most max_inflight attempts at once (0 or more than
 * CD_RACE_MAX_ATTEMPTS: CD_RACE_MAX_ATTEMPTS). */
void cd_race_init(struct cd_race *r, uint64_t now, uint32_t timeout_ms,
                  size_t max_inflight);

/* Append an address of family (CD_RACE_V6 or CD_RACE_OTHER); its index is
 * the count of addresses added before it.  CONDUIT_OK or
 * CONDUIT_ERR_NOMEM (past CD_RACE_INLINE addresses only). */
int cd_race_add_more(struct cd_race *r, int family);
static inline int cd_race_add(struct cd_race *r, int family)
{
	if (r->naddrs >= CD_RACE_INLINE)
		return cd_race_add_more(r, family);
	r->v6 |= (uint64_t)(family == CD_RACE_V6) << r->naddrs++;
	return CONDUIT_OK;
}

/* No more addresses are coming. */
void cd_race_complete(struct cd_race *r);

/* What to do at time now; on CD_RACE_START *addr is the address to start
 * (it counts as in flight from then on).  Once CD_RACE_FAILED or
 * CD_RACE_TIMEOUT has been returned, the race returns it again; after
 * cd_race_won(), CD_RACE_WAIT. */
enum cd_race_step cd_race_next_slow(struct cd_race *r, uint64_t now,
                                    size_t *addr);
static inline enum cd_race_step cd_race_next(struct cd_race *r, uint64_t now,
                                             size_t *addr)
{
	/* The common answer, after each start: everything known is in
	 * flight, nothing can start, nothing is due. */
	if (r->nstarted == r->naddrs && r->inflight > 0 && !r->over &&
	    now < r->deadline)
		return CD_RACE_WAIT;
	/* And the first answer of most connects: the one address of a
	 * literal or a path starts at once (as cd_race_next_slow would
	 * start it, without its search). */
	if (r->naddrs == 1 && r->nstarted == 0 && !r->over &&
	    now < r->deadline) {
		r->started = 1;
		r->last_family = (int)(r->v6 & 1);
		r->nstarted = r->inflight = 1;
		r->next_start = now + CD_RACE_STAGGER_MS;
		*addr = 0;
		return CD_RACE_START;
	}
	return cd_race_next_slow(r, now, addr);
}

/* An attempt ended without connecting: the next address may start now. */
void cd_race_failed(struct cd_race *r);

/* An attempt connected: the race is over (the backend closes the
 * others). */
void cd_race_won(struct cd_race *r);

/* When cd_race_next() next has something to do if no attempt ends before
 * (UINT64_MAX: only an attempt's end or a new address can move it). */
uint64_t cd_race_wake(const struct cd_race *r);

/* Addresses added so far. */
static inline size_t cd_race_count(const struct cd_race *r)
{
	return r->naddrs;
}

/* Free what cd_race_add() allocated.  The race may be initialised again
 * afterwards. */
static inline void cd_race_fini(struct cd_race *r)
{
	if (r->more != NULL) {
		free(r->more);
		r->more = NULL;
		r->more_words = 0;
	}
}

/* ---- TCP options --------------------------------------------------- */

/* TCP keepalive: probes start after keepalive= seconds of silence, are
 * repeated every third of that (at least 1 s), and the connection is
 * dropped after this many go unanswered. */
#define CD_TCP_KEEPCNT 9

struct cd_tcp_opts {
	bool nodelay;          /* TCP_NODELAY: on unless nodelay=0 */
	bool have_source;      /* source= given */
	uint32_t keep_idle_s;  /* keepalive=; 0: keepalive off */
	uint32_t keep_intvl_s; /* between probes */
	uint32_t keep_cnt;     /* unanswered probes before giving up */
	struct conduit_addr source;
};

/* Read ep's TCP options (the URI grammar has checked them).  CONDUIT_OK,
 * or CONDUIT_ERR_OPTION with the message on ctx. */
int cd_tcp_opts_parse(struct cd_tcp_opts *o, conduit_ctx *ctx,
                      const conduit_endpoint *ep);

/* Whether an address of family (CONDUIT_AF_*) can be used with o: with a
 * source address, only those of its family. */
static inline bool cd_tcp_opts_fit(const struct cd_tcp_opts *o, int family)
{
	return !o->have_source || o->source.family == family;
}

/* Fail ctx because none of ep's addresses fits o's source address;
 * returns CONDUIT_ERR_OPTION. */
int cd_tcp_opts_no_fit(conduit_ctx *ctx, const conduit_endpoint *ep,
                       const struct cd_tcp_opts *o);

#endif
