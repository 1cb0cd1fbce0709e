/*
 * report.h - conduit-bench's table and JSON output (report.c).
 */
#ifndef CONDUIT_TOOLS_BENCH_REPORT_H
#define CONDUIT_TOOLS_BENCH_REPORT_H

#include "bench.h"

#include <stdbool.h>
#include <stdint.h>

/* The variants of a figure: the table's columns. */
enum api { API_RAW, API_CONDUIT, API_NNG, NAPI };

/* Whether a figure has an nng variant. */
enum nng_state {
	NNG_NONE,     /* nng has nothing like it (vchan, lwIP, resolver) */
	NNG_MISSING,  /* it would, but nng (or its TLS) is not here: n/a */
	NNG_MEASURED, /* measured in the same run */
	NNG_FAILED,   /* nng failed here: said on stderr, the column says so */
};

/*
 * One figure.  Every repeat is a round of runs next to each other in
 * time, one per variant; machine speed drifts over seconds here (a shared
 * host), so a round's own conduit/baseline quotient is the fair comparison,
 * and the figure's ratio is the median of those quotients (the same for
 * conduit/nng).  The value columns are the medians of each variant's runs;
 * the best runs and every round's quotients go to the JSON output.
 */
struct row {
	char transport[24];
	char figure[40];
	char label[96];
	char unit[16];
	char baseline[64];
	char param_name[24]; /* "write_size", or "" */
	uint64_t param;
	const char *amount_name; /* NULL for figures from other sections */
	uint64_t amount;
	bool higher_better;
	int decimals;
	enum nng_state nng;
	unsigned n;
	double run[NAPI][BENCH_MAX_REPEATS]; /* [API_RAW] is the baseline */
	double pair[BENCH_MAX_REPEATS]; /* conduit / baseline of each round */
	double pair_nng[BENCH_MAX_REPEATS]; /* conduit / nng of each round */
	double med[NAPI], best[NAPI];
	double ratio, rmin, rmax, ratio_nng;
};

/* A new row, or NULL when the table is full. */
struct row *report_row(const char *transport, const char *figure,
                       const char *unit, bool higher_better, int decimals,
                       const char *baseline, enum nng_state nng);
/* Record one round's runs (v[API_NNG] only when the row has nng). */
void row_add(struct row *r, const double *v);
/* Every round is in: the medians, and the row printed (not with
 * --json). */
void row_finish(struct row *r);
/* src, or "?", into dst. */
void bench_copy(char *dst, size_t cap, const char *src);

/* --json: the rows are kept for report_json_results() alone. */
void report_set_json(bool on);
bool report_is_json(void);
/* A section's figure did not fit in the table. */
bool report_overflowed(void);
/* s as a JSON string. */
void json_str(const char *s);
/* The JSON object's last members (method, notes, results) and its end. */
void report_json_results(void);

#endif
