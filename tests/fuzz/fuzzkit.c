/*
 * fuzzkit.c - the properties every harness checks (see fuzzkit.h): a
 * transcript of what conduit shows, its printability, and the redaction
 * differential between two runs with different secret markers.
 */
#include "fuzzkit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fz_log_add(struct fz_log *log, const char *what, const char *text)
{
	if (text == NULL)
		text = "(null)";
	size_t wl = strlen(what), tl = strlen(text);
	size_t need = log->len + wl + 2 + tl + 1;
	if (need > log->cap) {
		size_t cap = log->cap ? log->cap : 1024;
		while (cap < need)
			cap *= 2;
		char *b = realloc(log->buf, cap);
		if (b == NULL)
			abort();
		log->buf = b;
		log->cap = cap;
	}
	memcpy(log->buf + log->len, what, wl);
	log->len += wl;
	memcpy(log->buf + log->len, ": ", 2);
	log->len += 2;
	memcpy(log->buf + log->len, text, tl + 1);
	log->len += tl + 1;
}

void fz_log_reset(struct fz_log *log)
{
	log->len = 0;
}

void fz_log_free(struct fz_log *log)
{
	free(log->buf);
	memset(log, 0, sizeof(*log));
}

void fz_observe(void *arg, const struct conduit_event *ev)
{
	struct fz_log *log = arg;
	fz_log_add(log, conduit_phase_name(ev->phase), ev->uri);
	fz_log_add(log, "detail", ev->detail);
}

void fz_show(const char *what, const char *text)
{
	fprintf(stderr, "%s: \"", what);
	for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
		if (*p >= 0x20 && *p < 0x7f && *p != '\\' && *p != '"')
			fputc(*p, stderr);
		else
			fprintf(stderr, "\\x%02x", *p);
	}
	fprintf(stderr, "\"\n");
}

/* Length of the UTF-8 sequence at p (at most n bytes) that encodes a
 * printable character; 0 for a control character or bad encoding. */
static size_t printable_char(const unsigned char *p, size_t n)
{
	unsigned c = p[0];
	if (c < 0x80)
		return c >= 0x20 && c != 0x7f ? 1 : 0;
	size_t len;
	unsigned cp;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	/* Overlong forms, surrogates, beyond Unicode, and the C1 controls
	 * (which terminals obey as they do ESC sequences). */
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff ||
	    (cp >= 0x80 && cp <= 0x9f))
		return 0;
	/* Bidirectional overrides reorder what a terminal shows. */
	if ((cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069))
		return 0;
	return len;
}

void fz_check_printable(const struct fz_log *log)
{
	size_t off = 0;
	while (off < log->len) {
		const char *e = log->buf + off;
		size_t el = strlen(e);
		const unsigned char *p = (const unsigned char *)e;
		/* The label and ": " are the harness's own. */
		const unsigned char *t = (const unsigned char *)strstr(e, ": ");
		t = t != NULL ? t + 2 : p;
		size_t left = el - (size_t)(t - p);
		while (left > 0) {
			size_t k = printable_char(t, left);
			if (k == 0) {
				fprintf(stderr, "not printable at byte %zu:\n",
				        (size_t)(t - p));
				fz_show("entry", e);
				abort();
			}
			t += k;
			left -= k;
		}
		off += el + 1;
	}
}

char *fz_with_marker(const uint8_t *data, size_t size, int run)
{
	const char *mark = run == 0 ? FZ_MARK_A : FZ_MARK_B;
	size_t ml = strlen(mark), n = 0;
	for (size_t i = 0; i < size; i++)
		n += data[i] == (uint8_t)FZ_SECRET_BYTE ? ml : 1;
	char *out = malloc(n + 1);
	if (out == NULL)
		abort();
	size_t k = 0;
	for (size_t i = 0; i < size; i++) {
		if (data[i] == (uint8_t)FZ_SECRET_BYTE) {
			memcpy(out + k, mark, ml);
			k += ml;
		} else {
			out[k++] = (char)data[i];
		}
	}
	out[k] = '\0';
	return out;
}

/* A copy of log with both markers replaced by "SECRET"; abort if either
 * marker is present at all. */
static char *blanked(const struct fz_log *log, size_t *len)
{
	char *out = malloc(log->len + 1);
	if (out == NULL)
		abort();
	memcpy(out, log->buf, log->len);
	out[log->len] = '\0';
	*len = log->len;
	size_t off = 0;
	while (off < log->len) {
		const char *e = out + off;
		if (strstr(e, FZ_MARK_A) != NULL ||
		    strstr(e, FZ_MARK_B) != NULL) {
			fprintf(stderr, "a secret value is shown:\n");
			fz_show("entry", e);
			abort();
		}
		off += strlen(e) + 1;
	}
	return out;
}

void fz_check_redacted(const struct fz_log *a, const struct fz_log *b)
{
	size_t la, lb;
	char *x = blanked(a, &la), *y = blanked(b, &lb);
	if (la != lb || memcmp(x, y, la) != 0) {
		fprintf(stderr, "the secret's value changes what is shown:\n");
		size_t off = 0;
		while (off < la && off < lb) {
			if (strcmp(x + off, y + off) != 0) {
				fz_show("run A", x + off);
				fz_show("run B", y + off);
				break;
			}
			off += strlen(x + off) + 1;
		}
		abort();
	}
	free(x);
	free(y);
}

uint8_t *fz_secret_uri(const uint8_t *t, size_t n, size_t *len)
{
	/* Before the secret, after it, and what head and tail may not hold
	 * lest the secret move out of its slot (a second "?" would make
	 * "?key" part of another option's name, say). */
	static const struct {
		const char *pre, *post, *nohead, *notail;
	} shapes[] = {
	    {"://user:", "@", ":/?#@[]", "@"},
	    {"?key=", "&", "?#&", ""},
	    {"?password=", "&", "?#&", ""},
	    {"?access_token=", "&", "?#&", ""},
	    {"?token=", "&", "?#&", ""},
	    {"?secret=", "&", "?#&", ""},
	    {"#access_token=", "&", "#", ""},
	    {"?connect-to=u:", "@", "?#&", ""},
	};
	if (n == 0)
		return NULL;
	const size_t nshapes = sizeof(shapes) / sizeof(shapes[0]);
	unsigned pick = t[0] % nshapes;
	t++;
	n--;
	const uint8_t *nul = memchr(t, 0, n);
	size_t hl = nul != NULL ? (size_t)(nul - t) : n;
	size_t tl = nul != NULL ? n - hl - 1 : 0;
	const uint8_t *tail = nul != NULL ? nul + 1 : t + n;
	size_t pl = strlen(shapes[pick].pre), sl = strlen(shapes[pick].post);
	uint8_t *out = malloc(hl + pl + 1 + sl + tl + 1);
	if (out == NULL)
		abort();
	size_t k = 0;
	for (size_t i = 0; i < hl; i++)
		if (t[i] != (uint8_t)FZ_SECRET_BYTE && t[i] != 0 &&
		    strchr(shapes[pick].nohead, t[i]) == NULL)
			out[k++] = t[i];
	memcpy(out + k, shapes[pick].pre, pl);
	k += pl;
	out[k++] = (uint8_t)FZ_SECRET_BYTE;
	memcpy(out + k, shapes[pick].post, sl);
	k += sl;
	for (size_t i = 0; i < tl; i++)
		if (tail[i] != (uint8_t)FZ_SECRET_BYTE && tail[i] != 0 &&
		    strchr(shapes[pick].notail, tail[i]) == NULL)
			out[k++] = tail[i];
	/* The fuzzer learns strings it sees compared: it must not write a
	 * marker itself. */
	out[k] = 0;
	if (memmem(out, k, "Zq7SECRET", 9) != NULL) {
		free(out);
		return NULL;
	}
	*len = k;
	return out;
}

void fz_check_uri_input(const uint8_t *data, size_t size,
                        void (*run)(const char *uri, struct fz_log *log))
{
	struct fz_log a = {0}, b = {0};
	char *raw = malloc(size + 1);
	if (raw == NULL)
		abort();
	memcpy(raw, data, size);
	raw[size] = '\0';
	run(raw, &a);
	fz_check_printable(&a);
	free(raw);

	size_t len;
	uint8_t *shaped = fz_secret_uri(data, size, &len);
	if (shaped != NULL) {
		char *ua = fz_with_marker(shaped, len, 0);
		char *ub = fz_with_marker(shaped, len, 1);
		fz_log_reset(&a);
		run(ua, &a);
		run(ub, &b);
		fz_check_printable(&a);
		fz_check_redacted(&a, &b);
		free(ua);
		free(ub);
		free(shaped);
	}
	fz_log_free(&a);
	fz_log_free(&b);
}
