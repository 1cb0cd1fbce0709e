/*
 * args.h - getopt_long with the rules every tool's command line keeps:
 * options spelled in full (no abbreviations, no bundled short options),
 * a value as `--name VALUE` or `--name=VALUE`, options and arguments in
 * any order, handed back in the order given, and "--" ending the options
 * (unless a program takes no operands at all: then "--" is handed back as
 * one, to be refused like any other).
 */
#ifndef CONDUIT_TOOLS_ARGS_H
#define CONDUIT_TOOLS_ARGS_H

#include <getopt.h>
#include <stdbool.h>

/* What tool_getopt() returns besides an option's val. */
enum {
	TOOL_ARGS_END = -1,     /* nothing left */
	TOOL_ARGS_OPERAND = -2, /* *value: an argument that is no option */
	TOOL_ARGS_UNKNOWN = -3, /* *value: the element, as given */
};

struct tool_args {
	int argc;
	char **argv;
	const char *shorts;         /* getopt's letters, e.g. "hv" */
	const struct option *longs; /* ends with a zero entry */
	int next;                   /* argv index; start at 1 */
	bool only_operands;         /* "--" was seen */
	bool dashdash_operand;      /* "--" is an operand, not the end */
	char optstring[32];
};

void tool_args_init(struct tool_args *a, int argc, char **argv,
                    const char *shorts, const struct option *longs);

/* The next option's val, with *value its value (NULL when an option that
 * takes one came last, without it; NULL for flags), or one of the
 * TOOL_ARGS_* codes. */
int tool_getopt(struct tool_args *a, const char **value);

#endif
