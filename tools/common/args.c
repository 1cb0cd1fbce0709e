/*
 * args.c - the tools' command lines through getopt_long (see args.h).
 *
 * getopt_long runs in REQUIRE_ORDER mode ("+") and is only ever given an
 * element that starts with '-': operands are taken here, in order, so a
 * command can tell which options came before or after which operand, and
 * nothing is permuted.  What getopt_long accepts beyond the tools' rules
 * (an abbreviated long option, "-vh") is reported as an unknown option.
 */
#include "args.h"

#include <stdio.h>
#include <string.h>

void tool_args_init(struct tool_args *a, int argc, char **argv,
                    const char *shorts, const struct option *longs)
{
	memset(a, 0, sizeof(*a));
	a->argc = argc;
	a->argv = argv;
	a->shorts = shorts;
	a->longs = longs;
	a->next = 1;
	/* '+': stop at operands (there are none here); ':': a missing value
	 * is told apart from an unknown option. */
	snprintf(a->optstring, sizeof(a->optstring), "+:%s", shorts);
}

/* Whether element e is spelled as the option getopt_long matched. */
static bool spelled_in_full(const struct tool_args *a, const char *e, int c,
                            int li)
{
	if (e[1] != '-')
		return strlen(e) == 2 && e[1] == c;
	if (li < 0)
		return false;
	const char *name = a->longs[li].name;
	size_t n = strcspn(e + 2, "=");
	return strlen(name) == n && strncmp(e + 2, name, n) == 0;
}

int tool_getopt(struct tool_args *a, const char **value)
{
	*value = NULL;
	while (a->next < a->argc) {
		char *e = a->argv[a->next];
		if (a->only_operands || e[0] != '-' || e[1] == '\0' ||
		    (a->dashdash_operand && strcmp(e, "--") == 0)) {
			a->next++;
			*value = e;
			return TOOL_ARGS_OPERAND;
		}
		if (strcmp(e, "--") == 0 && !a->dashdash_operand) {
			a->next++;
			a->only_operands = true;
			continue;
		}
		/* Messages are the caller's; optind 0 makes getopt_long
		 * start afresh, then it is placed on this element. */
		opterr = 0;
		optind = 0;
		getopt_long(1, a->argv, a->optstring, a->longs, NULL);
		optind = a->next;
		int li = -1;
		int c =
		    getopt_long(a->argc, a->argv, a->optstring, a->longs, &li);
		a->next = optind > a->next ? optind : a->next + 1;
		if (c == ':') {
			c = optopt;
			for (int k = 0; li < 0 && a->longs[k].name != NULL; k++)
				if (a->longs[k].val == c &&
				    spelled_in_full(a, e, c, k))
					li = k;
		} else if (c != '?' && c != -1) {
			*value = optarg;
		}
		if (c == '?' || c == -1 || !spelled_in_full(a, e, c, li)) {
			*value = e;
			return TOOL_ARGS_UNKNOWN;
		}
		return c;
	}
	return TOOL_ARGS_END;
}
