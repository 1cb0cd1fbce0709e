/*
 * ctrl.c - libxenctrl.so.4.17 of the Xen emulation: the three calls a
 * vchan program makes of it (Xen's vchan-socket-proxy asks whether the
 * peer domain still exists while it waits for its ring).
 *
 * An emulated domain exists while a process playing it runs: each
 * process that opens XenStore leaves dom/<domid>-<pid> in the host
 * directory (see xe_domain_mark()), and an entry whose process is gone
 * is removed when found.  Domain 0, the privileged domain, always exists.
 * The real libxenctrl binds every symbol it uses from the other Xen
 * libraries at load time, and the emulation has few of them: this one
 * stands in for it, under its soname and symbol version.
 */
#include "xenemu.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xenctrl.h>

struct xc_interface_core {
	int unused;
};

xc_interface *xc_interface_open(xentoollog_logger *logger,
                                xentoollog_logger *dombuild_logger,
                                unsigned open_flags)
{
	(void)logger;
	(void)dombuild_logger;
	(void)open_flags;
	if (xe_dir() == NULL)
		return NULL;
	return calloc(1, sizeof(struct xc_interface_core));
}

int xc_interface_close(xc_interface *xch)
{
	free(xch);
	return 0;
}

/* Whether domain d has a live process; stale entries removed. */
static int domain_alive(uint32_t d)
{
	if (d == 0)
		return 1;
	char dir[PATH_MAX];
	if (xe_subdir("dom", dir, sizeof(dir)) < 0)
		return 0;
	DIR *dp = opendir(dir);
	if (dp == NULL)
		return 0;
	int alive = 0;
	struct dirent *de;
	while (!alive && (de = readdir(dp)) != NULL) {
		unsigned dom;
		long pid;
		if (sscanf(de->d_name, "%u-%ld", &dom, &pid) != 2 || dom != d)
			continue;
		if (kill((pid_t)pid, 0) == 0 || errno == EPERM)
			alive = 1;
		else
			unlinkat(dirfd(dp), de->d_name, 0);
	}
	closedir(dp);
	return alive;
}

int xc_domain_getinfo(xc_interface *xch, uint32_t first_domid,
                      unsigned int max_doms, xc_dominfo_t *info)
{
	if (xch == NULL || (max_doms > 0 && info == NULL)) {
		errno = EINVAL;
		return -1;
	}
	/* Domains in order from first_domid, as Xen lists them. */
	unsigned n = 0;
	for (uint32_t d = first_domid; d <= 0x7fef && n < max_doms; d++) {
		if (!domain_alive(d))
			continue;
		memset(&info[n], 0, sizeof(info[n]));
		info[n].domid = d;
		info[n].running = 1;
		info[n].nr_online_vcpus = 1;
		info[n].cpupool = 0;
		n++;
	}
	return (int)n;
}
