/*
 * common.c - helpers compiled into each of the emulation's libraries:
 * where the host directory is, which domain this process is, how event
 * ports are named, and the part of "unmap notify" that must happen when a
 * process dies without unmapping (the real kernel does it on exit).
 * Every symbol here is local to its library (see the version scripts).
 */
#include "xenemu.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

const char *xe_dir(void)
{
	const char *d = getenv("CONDUIT_XEN_DIR");
	if (d == NULL || d[0] == '\0') {
		errno = ENOENT;
		return NULL;
	}
	if (mkdir(d, 0700) < 0 && errno != EEXIST)
		return NULL;
	return d;
}

uint32_t xe_domid(void)
{
	const char *s = getenv("CONDUIT_XEN_DOMID");
	if (s == NULL || s[0] == '\0')
		return 0;
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	/* A domain id is 15 bits in Xen; a bad value is domain 0x7ff4
	 * (DOMID_INVALID), which nothing will ever match. */
	if (*end != '\0' || v > 0x7fef)
		return 0x7ff4;
	return (uint32_t)v;
}

int xe_subdir(const char *sub, char *buf, size_t len)
{
	const char *d = xe_dir();
	if (d == NULL)
		return -1;
	if ((size_t)snprintf(buf, len, "%s/%s", d, sub) >= len) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (mkdir(buf, 0700) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

socklen_t xe_evtchn_addr(struct sockaddr_un *sa, uint32_t domid, uint32_t port)
{
	struct stat st;
	const char *d = xe_dir();
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (d == NULL || stat(d, &st) < 0)
		memset(&st, 0, sizeof(st));
	/* sun_path[0] stays NUL: the abstract namespace. */
	int n = snprintf(sa->sun_path + 1, sizeof(sa->sun_path) - 1,
	                 "conduit-xen/%llx/%llx/evtchn/%u/%u",
	                 (unsigned long long)st.st_dev,
	                 (unsigned long long)st.st_ino, domid, port);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
	                   (size_t)n);
}

int xe_notify_put(int fd, int side, uint32_t active, uint32_t offset,
                  uint32_t port)
{
	struct xe_grant_hdr h;
	h.notify[side].active = active;
	h.notify[side].offset = offset;
	h.notify[side].port = port;
	/* Only this side's record: the other side updates its own, from
	 * another process, without a lock. */
	off_t at = (off_t)(offsetof(struct xe_grant_hdr, notify) +
	                   (size_t)side * sizeof(h.notify[0]));
	ssize_t n = pwrite(fd, &h.notify[side], sizeof(h.notify[side]), at);
	return n == (ssize_t)sizeof(h.notify[side]) ? 0 : -1;
}

/* Clear one notify byte of a grant file. */
static void clear_byte(int fd, uint32_t offset)
{
	unsigned char *p = mmap(NULL, XE_PAGE, PROT_READ | PROT_WRITE,
	                        MAP_SHARED, fd, XE_PAGE);
	if (p == MAP_FAILED)
		return;
	__atomic_store_n(&p[offset % XE_PAGE], 0, __ATOMIC_SEQ_CST);
	munmap(p, XE_PAGE);
}

void xe_peer_died(uint32_t self, uint32_t dead, uint32_t port)
{
	char path[PATH_MAX];
	if (xe_subdir("grant", path, sizeof(path)) < 0)
		return;
	DIR *dir = opendir(path);
	if (dir == NULL)
		return;
	struct dirent *de;
	while ((de = readdir(dir)) != NULL) {
		unsigned g, r;
		if (sscanf(de->d_name, "%u-%u", &g, &r) != 2)
			continue;
		/* Only grants between the survivor and the dead domain. */
		if (g != self && g != dead)
			continue;
		int fd = openat(dirfd(dir), de->d_name, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			continue;
		struct xe_grant_hdr h;
		if (pread(fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h) &&
		    h.magic == XE_MAGIC) {
			/* Side 0: the dead domain granted to us.  Side 1:
			 * we granted to the dead domain (not to a third
			 * one whose port has the same number). */
			int side = h.granter == dead ? 0 : 1;
			bool ours =
			    side == 0 ? h.grantee == self
			              : h.granter == self && h.grantee == dead;
			if (ours && h.notify[side].active &&
			    h.notify[side].port == port) {
				clear_byte(fd, h.notify[side].offset);
				xe_notify_put(fd, side, 0, 0, 0);
			}
		}
		close(fd);
	}
	closedir(dir);
}

void xe_domain_mark(uint32_t d)
{
	/* Once per process and domain (a process may play several in
	 * turn, and a child inherits the memory but is another process). */
	static uint32_t last_d = 0xffffffffu;
	static pid_t last_pid;
	if (last_d == d && last_pid == getpid())
		return;
	last_d = d;
	last_pid = getpid();
	char dir[PATH_MAX], f[PATH_MAX + 64];
	if (xe_subdir("dom", dir, sizeof(dir)) < 0)
		return;
	snprintf(f, sizeof(f), "%s/%u-%ld", dir, d, (long)getpid());
	if (access(f, F_OK) == 0)
		return;
	int fd = open(f, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
}
