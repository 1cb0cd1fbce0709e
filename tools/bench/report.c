/*
 * report.c - conduit-bench's table and JSON output: every figure is a
 * row, with every repeat's run of each variant.
 */
#include "report.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REPEATS BENCH_MAX_REPEATS

#define MAX_ROWS 160
static struct row rows[MAX_ROWS];
static size_t nrows;
static bool json;
static bool emit_failed; /* a section's figure did not fit */

/* Lines for the reader (printed at once, and kept for the JSON). */
#define MAX_NOTES 24
static char notes[MAX_NOTES][640];
static size_t nnotes;

void bench_note(const char *fmt, ...)
{
	char buf[640];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (nnotes < MAX_NOTES)
		snprintf(notes[nnotes++], sizeof(notes[0]), "%s", buf);
	if (!json) {
		printf("%s\n", buf);
		fflush(stdout);
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(const double *v, unsigned n)
{
	double s[MAX_REPEATS];
	if (n == 0)
		return 0;
	memcpy(s, v, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

void bench_copy(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src != NULL ? src : "?");
}

struct row *report_row(const char *transport, const char *figure,
                       const char *unit, bool higher_better, int decimals,
                       const char *baseline, enum nng_state nng)
{
	if (nrows == MAX_ROWS)
		return NULL;
	struct row *r = &rows[nrows++];
	memset(r, 0, sizeof(*r));
	bench_copy(r->transport, sizeof(r->transport), transport);
	bench_copy(r->figure, sizeof(r->figure), figure);
	bench_copy(r->unit, sizeof(r->unit), unit);
	bench_copy(r->baseline, sizeof(r->baseline), baseline);
	r->higher_better = higher_better;
	r->decimals = decimals;
	r->nng = nng;
	return r;
}

/* Record one round's runs (v[API_NNG] only when the row has nng). */
void row_add(struct row *r, const double *v)
{
	if (r->n == MAX_REPEATS)
		return;
	for (int a = 0; a < NAPI; a++)
		r->run[a][r->n] = v[a];
	double c = v[API_CONDUIT];
	r->pair[r->n] = v[API_RAW] > 0 ? c / v[API_RAW] : 0;
	r->pair_nng[r->n] = v[API_NNG] > 0 ? c / v[API_NNG] : 0;
	r->n++;
}

/* What nng is in a section's heading. */
static const char *nng_what(const struct row *r)
{
	if (r->nng == NNG_NONE)
		return "none";
	if (r->nng == NNG_MISSING)
		return "n/a";
	if (strcmp(r->transport, "unix") == 0)
		return "ipc://, pair1 messages";
	if (strcmp(r->transport, "tcp") == 0)
		return "tcp://, pair1 messages";
	return "tls+tcp://, pair1 messages";
}

static void print_row(const struct row *r)
{
	static char last_tr[24], last_base[64];
	if (strcmp(last_tr, r->transport) != 0 ||
	    strcmp(last_base, r->baseline) != 0) {
		printf("%s: baseline %s; nng: %s\n", r->transport, r->baseline,
		       nng_what(r));
		bench_copy(last_tr, sizeof(last_tr), r->transport);
		bench_copy(last_base, sizeof(last_base), r->baseline);
	}
	char nv[32], nr[16], br[16];
	/* A baseline of 0 (no heap at all) has no meaningful quotient. */
	if (r->med[API_RAW] > 0)
		snprintf(br, sizeof(br), "%.3f", r->ratio);
	else
		bench_copy(br, sizeof(br), "-");
	if (r->nng == NNG_MEASURED) {
		snprintf(nv, sizeof(nv), "%.*f", r->decimals, r->med[API_NNG]);
		snprintf(nr, sizeof(nr), "%.3f", r->ratio_nng);
	} else {
		const char *s = r->nng == NNG_MISSING  ? "n/a"
		                : r->nng == NNG_FAILED ? "failed"
		                                       : "-";
		bench_copy(nv, sizeof(nv), s);
		bench_copy(nr, sizeof(nr), s);
	}
	/* A long label gets a line of its own, so the columns stay. */
	const char *label = r->label;
	if (strlen(label) > 25) {
		printf("  %s\n", label);
		label = "";
	}
	printf("  %-25s %10.*f %10.*f %6s %10s %6s\n", label, r->decimals,
	       r->med[API_CONDUIT], r->decimals, r->med[API_RAW], br, nv, nr);
	fflush(stdout);
}

void row_finish(struct row *r)
{
	for (int a = 0; a < NAPI; a++) {
		r->med[a] = median(r->run[a], r->n);
		r->best[a] = r->n ? r->run[a][0] : 0;
		for (unsigned i = 1; i < r->n; i++)
			if (r->higher_better ? r->run[a][i] > r->best[a]
			                     : r->run[a][i] < r->best[a])
				r->best[a] = r->run[a][i];
	}
	r->ratio = median(r->pair, r->n);
	r->ratio_nng = median(r->pair_nng, r->n);
	r->rmin = r->rmax = r->n ? r->pair[0] : 0;
	for (unsigned i = 1; i < r->n; i++) {
		if (r->pair[i] < r->rmin)
			r->rmin = r->pair[i];
		if (r->pair[i] > r->rmax)
			r->rmax = r->pair[i];
	}
	if (!json)
		print_row(r);
}

void bench_emit(const struct bench_figure *f)
{
	if (f == NULL)
		return;
	struct row *r =
	    report_row(f->transport, f->figure, f->unit, f->higher_better,
	               f->decimals, f->baseline, NNG_NONE);
	if (r == NULL) {
		fprintf(stderr,
		        "conduit-bench: more than %d figures; %s %s "
		        "is left out\n",
		        MAX_ROWS, f->transport ? f->transport : "?",
		        f->figure ? f->figure : "?");
		emit_failed = true;
		return;
	}
	bench_copy(r->label, sizeof(r->label),
	           f->label != NULL ? f->label : f->figure);
	if (f->param_name != NULL) {
		bench_copy(r->param_name, sizeof(r->param_name), f->param_name);
		r->param = f->param;
	}
	unsigned n = f->n < MAX_REPEATS ? f->n : MAX_REPEATS;
	for (unsigned i = 0; i < n; i++) {
		double v[NAPI] = {0, 0, 0};
		v[API_RAW] = f->base[i];
		v[API_CONDUIT] = f->conduit[i];
		row_add(r, v);
	}
	row_finish(r);
}

void json_str(const char *s)
{
	putchar('"');
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c == '\n')
			putchar(' '); /* notes are wrapped for the terminal */
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void json_list(const double *v, unsigned n, int decimals)
{
	putchar('[');
	for (unsigned i = 0; i < n; i++)
		printf("%s%.*f", i ? ", " : "", decimals, v[i]);
	putchar(']');
}

void report_set_json(bool on)
{
	json = on;
}

bool report_is_json(void)
{
	return json;
}

bool report_overflowed(void)
{
	return emit_failed;
}

void report_json_results(void)
{
	printf("  \"method\": \"each repeat runs every variant back to back "
	       "(order rotating); conduit, baseline and nng are the medians "
	       "of the runs, best_* the best runs, ratio (ratio_nng) the "
	       "median of the repeats' conduit/baseline (conduit/nng) "
	       "quotients; nng moves messages (one nng_send per write), "
	       "throughput counts payload bytes\",\n  \"notes\": [");
	for (size_t i = 0; i < nnotes; i++) {
		printf("%s\n    ", i ? "," : "");
		json_str(notes[i]);
	}
	printf("%s],\n  \"results\": [", nnotes ? "\n  " : "");
	for (size_t i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		int d = r->decimals + 2;
		bool has_nng = r->nng == NNG_MEASURED;
		printf("%s\n    {\"transport\": ", i ? "," : "");
		json_str(r->transport);
		printf(", \"figure\": ");
		json_str(r->figure);
		printf(", \"label\": ");
		json_str(r->label);
		printf(", \"unit\": ");
		json_str(r->unit);
		printf(", \"better\": \"%s\",\n     ",
		       r->higher_better ? "higher" : "lower");
		if (r->param_name[0] != '\0') {
			json_str(r->param_name);
			printf(": %" PRIu64 ", ", r->param);
		}
		if (r->amount_name != NULL)
			printf("\"%s\": %" PRIu64 ", ", r->amount_name,
			       r->amount);
		printf("\"baseline_name\": ");
		json_str(r->baseline);
		printf(",\n     \"conduit\": %.*f, \"baseline\": %.*f, ", d,
		       r->med[API_CONDUIT], d, r->med[API_RAW]);
		if (r->med[API_RAW] > 0)
			printf("\"ratio\": %.4f, \"ratio_min\": %.4f, "
			       "\"ratio_max\": %.4f,\n     ",
			       r->ratio, r->rmin, r->rmax);
		else
			printf("\"ratio\": null, \"ratio_min\": null, "
			       "\"ratio_max\": null,\n     ");
		if (has_nng)
			printf("\"nng\": %.*f, \"ratio_nng\": %.4f,\n     ", d,
			       r->med[API_NNG], r->ratio_nng);
		else
			printf("\"nng\": null, \"ratio_nng\": null,\n     ");
		printf("\"best_conduit\": %.*f, \"best_baseline\": %.*f", d,
		       r->best[API_CONDUIT], d, r->best[API_RAW]);
		if (has_nng)
			printf(", \"best_nng\": %.*f", d, r->best[API_NNG]);
		printf(",\n     \"runs\": {\"conduit\": ");
		json_list(r->run[API_CONDUIT], r->n, d);
		printf(", \"baseline\": ");
		json_list(r->run[API_RAW], r->n, d);
		if (has_nng) {
			printf(", \"nng\": ");
			json_list(r->run[API_NNG], r->n, d);
		}
		printf("},\n     \"pairs\": ");
		json_list(r->pair, r->n, 4);
		if (has_nng) {
			printf(", \"pairs_nng\": ");
			json_list(r->pair_nng, r->n, 4);
		}
		printf("}");
	}
	printf("\n  ]\n}\n");
}
