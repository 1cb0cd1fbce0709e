/*
 * system.c - temporary trees, signals and the emulation's directory.
 */
#include "common.h"

#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rm_entry(const char *path, const struct stat *sb, int flag,
                    struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

void tool_rmtree(const char *path)
{
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void tool_catch_signals(void (*handler)(int), int ignore_pipe)
{
	if (ignore_pipe)
		signal(SIGPIPE, SIG_IGN);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sigemptyset(&sa.sa_mask);
	const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
}

const char *tool_xen_emulation_dir(void)
{
	const char *e = getenv("CONDUIT_XEN_EMULATION");
	if (e != NULL && e[0] != '\0')
		return e;
#ifdef CONDUIT_XENEMU_DIR
	return CONDUIT_XENEMU_DIR;
#else
	return "";
#endif
}
