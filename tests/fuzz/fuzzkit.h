/*
 * fuzzkit.h - what every fuzz harness checks on every input.
 *
 * Harnesses collect everything conduit would show a person (messages,
 * explain steps, observer events, printed endpoints) into a transcript,
 * then ask two questions of it:
 *   - printability: no control byte reaches a transcript raw (they must be
 *     escaped, as "\x1b"), and the text is valid UTF-8;
 *   - redaction, as a differential: the same input is run twice with its
 *     secret values replaced by two different markers; the transcripts must
 *     be identical once the markers are blanked, and neither marker may
 *     appear in them.
 * A failed property calls abort(), which libFuzzer reports with the input.
 */
#ifndef CONDUIT_FUZZKIT_H
#define CONDUIT_FUZZKIT_H

#include <conduit/conduit.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A growing text of NUL-separated entries. */
struct fz_log {
	char *buf;
	size_t len, cap;
};

/* Add text (a C string; NULL is recorded as "(null)") as one entry. */
void fz_log_add(struct fz_log *log, const char *what, const char *text);
void fz_log_reset(struct fz_log *log);
void fz_log_free(struct fz_log *log);

/* An observer that records every event's phase, uri and detail. */
void fz_observe(void *arg, const struct conduit_event *ev);

/* Abort, naming the entry, unless every entry of log is printable UTF-8
 * with no control byte. */
void fz_check_printable(const struct fz_log *log);

/* The two markers that stand for a secret value in the two runs. */
#define FZ_MARK_A "Zq7SECRETaaaa"
#define FZ_MARK_B "Zq7SECRETbbbb"

/*
 * Make the input of one run: text with every byte FZ_SECRET_BYTE replaced
 * by the marker of run (0: A, 1: B).  The result is a NUL-terminated copy
 * in a buffer the caller frees.
 */
#define FZ_SECRET_BYTE '\x01'
char *fz_with_marker(const uint8_t *data, size_t size, int run);

/*
 * Compare the transcripts of the two runs: abort unless they are equal
 * with the markers blanked and neither marker appears.  Only meaningful
 * when every secret byte of the input stood where a secret value goes;
 * harnesses make sure of that by building their inputs (fz_secret_uri).
 */
void fz_check_redacted(const struct fz_log *a, const struct fz_log *b);

/*
 * Build a URI whose secret values sit only where secrets go: the fuzzer's
 * text t (size n) supplies the rest.  The first byte of t picks the shape;
 * the text is cut at the first NUL into a head and a tail, and the URI is
 * one of
 *   HEAD://user:S@TAIL             a password in the userinfo
 *   HEAD?key=S&TAIL                a secret option (key=, password=,
 *   HEAD?access_token=S&TAIL       access_token=, token=, secret=)
 *   HEAD#access_token=S&TAIL       a fragment
 *   HEAD?connect-to=u:S@TAIL       a password inside connect-to
 * where S is FZ_SECRET_BYTE.  Head and tail lose their FZ_SECRET_BYTEs.
 * Returns a malloc'd buffer of *len bytes (no NUL), or NULL for no input.
 */
uint8_t *fz_secret_uri(const uint8_t *t, size_t n, size_t *len);

/*
 * The checks of a harness whose input is a URI: run(uri, log) once on the
 * input as it is (up to its first NUL), whose transcript must be
 * printable; then twice on the URI fz_secret_uri() builds from it, with
 * each marker, whose transcripts must be printable and redacted.
 */
void fz_check_uri_input(const uint8_t *data, size_t size,
                        void (*run)(const char *uri, struct fz_log *log));

/* The escaped, printable form of a transcript entry, for failure reports. */
void fz_show(const char *what, const char *text);

#endif
