/*
 * text.c - text that conduit shows to people.  URIs, rules and names come
 * from users, files and the network, and every message quotes some of
 * them; a control byte copied raw into a message could drive a terminal
 * (ESC sequences) or forge a second log line (a newline).  Everything that
 * conduit stores as a message, reports to an observer or explains passes
 * through here: control bytes and bytes that are not UTF-8 become "\xHH",
 * printable UTF-8 stays as it is.
 */
#include "core.h"

#include <stdlib.h>
#include <string.h>

size_t cd_text_char(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
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
	/* Overlong forms, surrogates and what lies beyond Unicode are not
	 * UTF-8; C1 controls act on terminals as ESC does; bidirectional
	 * overrides reorder what is shown. */
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff ||
	    (cp >= 0x80 && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) ||
	    (cp >= 0x2066 && cp <= 0x2069))
		return 0;
	return len;
}

/* The length of s's escaped form, and whether it differs from s. */
static size_t escaped_len(const char *s, bool *differs)
{
	size_t n = strlen(s), out = 0;
	*differs = false;
	for (size_t i = 0; i < n;) {
		size_t k = cd_text_char(s + i, n - i);
		if (k == 0) {
			out += 4;
			i++;
			*differs = true;
		} else {
			out += k;
			i += k;
		}
	}
	return out;
}

void cd_text_escape(char *out, size_t cap, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	if (cap == 0)
		return;
	size_t n = strlen(s), o = 0;
	for (size_t i = 0; i < n;) {
		size_t k = cd_text_char(s + i, n - i);
		if (k == 0) {
			if (o + 4 >= cap)
				break;
			unsigned char c = (unsigned char)s[i++];
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		} else {
			/* A character is written whole or not at all. */
			if (o + k >= cap)
				break;
			memcpy(out + o, s + i, k);
			o += k;
			i += k;
		}
	}
	out[o] = '\0';
}

char *cd_text_shown(char *s)
{
	if (s == NULL)
		return NULL;
	bool differs;
	size_t len = escaped_len(s, &differs);
	if (!differs)
		return s;
	char *out = malloc(len + 1);
	if (out != NULL)
		cd_text_escape(out, len + 1, s);
	free(s);
	return out;
}

const char *cd_text_for(const char *s, char **tmp)
{
	*tmp = NULL;
	if (s == NULL)
		return "";
	bool differs;
	size_t len = escaped_len(s, &differs);
	if (!differs)
		return s;
	*tmp = malloc(len + 1);
	if (*tmp == NULL)
		return "(text not shown: out of memory)";
	cd_text_escape(*tmp, len + 1, s);
	return *tmp;
}
