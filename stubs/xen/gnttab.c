/*
 * gnttab.c - libxengnttab.so.1 of the Xen emulation: granting pages
 * (xengntshr_*) and mapping pages granted by another domain
 * (xengnttab_*), exactly the calls libxenvchan makes.
 *
 * A granted page is the file grant/<granter>-<ref> in the host directory:
 * a header page (struct xe_grant_hdr) then the page.  Both sides map the
 * page with a real shared mmap, so libxenvchan may munmap a multi-page
 * ring itself as it does under Xen.  Every mapping sits between two
 * PROT_NONE guard pages, so an access just outside it faults, whoever
 * makes it.  Only the grantee named at share time may map a grant.
 *
 * Unmap notification: the byte asked for is cleared on a clean unshare /
 * unmap here; when a process dies instead, the surviving peer's event
 * channel notices (see evtchn.c) and clears it, as the kernel's gntdev
 * would on the dead process's exit.  The event half of the notification
 * is the channel closing, which wakes the survivor.
 *
 * A grant file is removed when its granter unshares it or closes the
 * handle that shared it, so nothing is left after a clean close.  Its
 * name (granter and ref) may then be taken by a new grant while a mapper
 * of the old one still holds its mapping: so notify records are updated
 * only in the file a mapping was made from (same inode), and each side
 * writes only its own record, since the two sides run in different
 * processes without a lock.
 */
#include "xenemu.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xengnttab.h>

/* One mapping made through a handle: reserve is the first guard page,
 * the pages follow, then the second guard page. */
struct xe_map {
	struct xe_map *next;
	unsigned char *reserve;
	uint32_t npages;
	uint32_t granter; /* whose grants */
	uint32_t *refs;   /* npages of them */
	int notify;       /* index of the page with an unmap notify, -1 */
	uint32_t notify_offset;
	ino_t notify_ino; /* its grant file: a later one may take the name */
};

struct xengntdev_handle {
	struct xe_map *maps;
};

/* Where the search for a free ref starts, for every handle of the
 * process: a ring's grants and the next ring's follow each other instead
 * of each handle walking over the refs its predecessors took.  Spread by
 * process so that the processes of one domain rarely meet. */
static uint32_t next_ref;

/* The grant directory, made if missing: once per call, not per page
 * (each check is a mkdir). */
static int grant_dir(char *buf, size_t len)
{
	return xe_subdir("grant", buf, len);
}

static int grant_path(char *buf, size_t len, const char *dir, uint32_t granter,
                      uint32_t ref)
{
	if ((size_t)snprintf(buf, len, "%s/%u-%u", dir, granter, ref) >= len) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

/* Reserve npages plus two guard pages of address space. */
static unsigned char *reserve(uint32_t npages)
{
	void *p = mmap(NULL, ((size_t)npages + 2) * XE_PAGE, PROT_NONE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

/* Drop a mapping: the pages (if still ours) and the guards. */
static void drop(struct xe_map *m, int pages_too)
{
	if (pages_too)
		munmap(m->reserve, ((size_t)m->npages + 2) * XE_PAGE);
	else {
		munmap(m->reserve, XE_PAGE);
		munmap(m->reserve + ((size_t)m->npages + 1) * XE_PAGE, XE_PAGE);
	}
	free(m->refs);
	free(m);
}

static struct xe_map *new_map(uint32_t npages, uint32_t granter)
{
	struct xe_map *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return NULL;
	m->refs = calloc(npages, sizeof(uint32_t));
	m->reserve = reserve(npages);
	if (m->refs == NULL || m->reserve == NULL) {
		if (m->reserve != NULL)
			munmap(m->reserve, ((size_t)npages + 2) * XE_PAGE);
		free(m->refs);
		free(m);
		errno = ENOMEM;
		return NULL;
	}
	m->npages = npages;
	m->granter = granter;
	m->notify = -1;
	return m;
}

/* Take the mapping starting at addr with count pages off the list. */
static struct xe_map *unlink_map(struct xengntdev_handle *h, void *addr,
                                 uint32_t count)
{
	for (struct xe_map **pp = &h->maps; *pp != NULL; pp = &(*pp)->next) {
		struct xe_map *m = *pp;
		if (m->reserve + XE_PAGE == addr && m->npages == count) {
			*pp = m->next;
			return m;
		}
	}
	return NULL;
}

/* Set (or clear) side's unmap notification in grant granter-ref, whose
 * file must be inode ino (0: whichever has the name): when its granter
 * has unshared it, the name may be a new grant's, which is not ours to
 * touch. */
static int update_notify(uint32_t granter, uint32_t ref, ino_t ino, int side,
                         int active, uint32_t offset, uint32_t port)
{
	char dir[PATH_MAX], path[PATH_MAX];
	if (grant_dir(dir, sizeof(dir)) < 0 ||
	    grant_path(path, sizeof(path), dir, granter, ref) < 0)
		return -1;
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct stat st;
	int rc = -1;
	if (fstat(fd, &st) == 0 && (ino == 0 || st.st_ino == ino))
		rc = xe_notify_put(fd, side, (uint32_t)active, offset, port);
	close(fd);
	return rc;
}

/* The second half of xengnttab_map_grant_ref_notify() and
 * xengntshr_share_page_notify(): p is the one-page mapping just put first
 * on h's list (NULL: the mapping failed); side's unmap notification is set
 * at offset in its grant, unless offset is past the page.  Returns p. */
static void *arm_notify(struct xengntdev_handle *h, void *p, int side,
                        uint32_t offset, evtchn_port_t port)
{
	if (p == NULL || offset >= XE_PAGE)
		return p;
	struct xe_map *m = h->maps;
	update_notify(m->granter, m->refs[0], m->notify_ino, side, 1, offset,
	              port);
	m->notify = 0;
	m->notify_offset = offset;
	return p;
}

/* The first half of xengnttab_unmap() and xengntshr_unshare(): take the
 * mapping of count pages at addr off h's list and clear the byte of its
 * unmap notification, if it has one.  NULL (errno EINVAL) if h has no such
 * mapping. */
static struct xe_map *take_map(struct xengntdev_handle *h, void *addr,
                               uint32_t count)
{
	struct xe_map *m = h != NULL ? unlink_map(h, addr, count) : NULL;
	if (m == NULL) {
		errno = EINVAL;
		return NULL;
	}
	if (m->notify >= 0) {
		unsigned char *page = m->reserve + XE_PAGE;
		__atomic_store_n(&page[m->notify_offset], 0, __ATOMIC_SEQ_CST);
	}
	return m;
}

/* ---- Mapping another domain's grants ----------------------------- */

xengnttab_handle *xengnttab_open(struct xentoollog_logger *logger,
                                 unsigned open_flags)
{
	(void)logger;
	(void)open_flags;
	if (xe_dir() == NULL)
		return NULL;
	return calloc(1, sizeof(struct xengntdev_handle));
}

int xengnttab_close(xengnttab_handle *xgt)
{
	if (xgt == NULL)
		return 0;
	/* Mappings outlive the handle, as with gntdev; only the guards of
	 * ones libxenvchan munmapped itself are ours to drop. */
	while (xgt->maps != NULL) {
		struct xe_map *m = xgt->maps;
		xgt->maps = m->next;
		drop(m, 0);
	}
	free(xgt);
	return 0;
}

void *xengnttab_map_domain_grant_refs(xengnttab_handle *xgt, uint32_t count,
                                      uint32_t domid, uint32_t *refs, int prot)
{
	if (xgt == NULL || count == 0 || count > 65536) {
		errno = EINVAL;
		return NULL;
	}
	struct xe_map *m = new_map(count, domid);
	if (m == NULL)
		return NULL;
	uint32_t self = xe_domid();
	char dir[PATH_MAX];
	if (grant_dir(dir, sizeof(dir)) < 0) {
		int e = errno;
		drop(m, 1);
		errno = e;
		return NULL;
	}
	for (uint32_t i = 0; i < count; i++) {
		char path[PATH_MAX];
		int fd = -1;
		struct xe_grant_hdr hd;
		struct stat st;
		int ok =
		    grant_path(path, sizeof(path), dir, domid, refs[i]) == 0 &&
		    (fd = open(path, O_RDWR | O_CLOEXEC)) >= 0 &&
		    fstat(fd, &st) == 0 &&
		    pread(fd, &hd, sizeof(hd), 0) == (ssize_t)sizeof(hd) &&
		    hd.magic == XE_MAGIC;
		int err = fd < 0 ? ENOENT : EINVAL;
		if (ok && (hd.grantee != self || hd.granter != domid)) {
			/* Xen: GNTST_permission_denied. */
			ok = 0;
			err = EPERM;
		}
		if (ok && (prot & PROT_WRITE) && !hd.writable) {
			ok = 0;
			err = EPERM;
		}
		void *at = m->reserve + ((size_t)i + 1) * XE_PAGE;
		if (ok && mmap(at, XE_PAGE, prot, MAP_SHARED | MAP_FIXED, fd,
		               XE_PAGE) == MAP_FAILED) {
			ok = 0;
			err = errno;
		}
		if (fd >= 0)
			close(fd);
		if (!ok) {
			drop(m, 1);
			errno = err;
			return NULL;
		}
		m->refs[i] = refs[i];
		if (i == 0)
			m->notify_ino = st.st_ino;
	}
	m->next = xgt->maps;
	xgt->maps = m;
	return m->reserve + XE_PAGE;
}

void *xengnttab_map_grant_ref_notify(xengnttab_handle *xgt, uint32_t domid,
                                     uint32_t ref, int prot,
                                     uint32_t notify_offset,
                                     evtchn_port_t notify_port)
{
	void *p = xengnttab_map_domain_grant_refs(xgt, 1, domid, &ref, prot);
	return arm_notify(xgt, p, 1, notify_offset, notify_port);
}

/* The rest of libxengnttab's VERS_1.0 calls, so that a library built
 * against the real one (libxenctrl binds all its symbols at load time)
 * loads over the emulation too. */
void *xengnttab_map_grant_ref(xengnttab_handle *xgt, uint32_t domid,
                              uint32_t ref, int prot)
{
	return xengnttab_map_domain_grant_refs(xgt, 1, domid, &ref, prot);
}

void *xengnttab_map_grant_refs(xengnttab_handle *xgt, uint32_t count,
                               uint32_t *domids, uint32_t *refs, int prot)
{
	/* One file per page: pages of several granters cannot be one
	 * mapping here. */
	for (uint32_t i = 1; domids != NULL && i < count; i++)
		if (domids[i] != domids[0]) {
			errno = EINVAL;
			return NULL;
		}
	if (domids == NULL) {
		errno = EINVAL;
		return NULL;
	}
	return xengnttab_map_domain_grant_refs(xgt, count, domids[0], refs,
	                                       prot);
}

int xengnttab_set_max_grants(xengnttab_handle *xgt, uint32_t nr_grants)
{
	(void)nr_grants;
	if (xgt == NULL) {
		errno = EINVAL;
		return -1;
	}
	return 0; /* no limit here */
}

int xengnttab_unmap(xengnttab_handle *xgt, void *start_address, uint32_t count)
{
	struct xe_map *m = take_map(xgt, start_address, count);
	if (m == NULL)
		return -1;
	if (m->notify >= 0)
		update_notify(m->granter, m->refs[0], m->notify_ino, 1, 0, 0,
		              0);
	drop(m, 1);
	return 0;
}

/* ---- Granting our own pages -------------------------------------- */

xengntshr_handle *xengntshr_open(struct xentoollog_logger *logger,
                                 unsigned open_flags)
{
	(void)logger;
	(void)open_flags;
	if (xe_dir() == NULL)
		return NULL;
	if (next_ref == 0)
		next_ref = 1 + (uint32_t)(getpid() % 16384) * 64;
	return calloc(1, sizeof(struct xengntdev_handle));
}

static void unshare_files(const struct xe_map *m)
{
	char dir[PATH_MAX];
	if (grant_dir(dir, sizeof(dir)) < 0)
		return;
	for (uint32_t i = 0; i < m->npages; i++) {
		char path[PATH_MAX];
		if (m->refs[i] != 0 && grant_path(path, sizeof(path), dir,
		                                  m->granter, m->refs[i]) == 0)
			unlink(path);
	}
}

int xengntshr_close(xengntshr_handle *xgs)
{
	if (xgs == NULL)
		return 0;
	/* libxenvchan munmaps multi-page rings itself and never unshares
	 * them: their grants end with the handle. */
	while (xgs->maps != NULL) {
		struct xe_map *m = xgs->maps;
		xgs->maps = m->next;
		unshare_files(m);
		drop(m, 0);
	}
	free(xgs);
	return 0;
}

/* Make a new grant file for one page; its ref in *ref, fd returned. */
static int new_grant(const char *dir, uint32_t self, uint32_t domid,
                     int writable, uint32_t *ref, ino_t *ino)
{
	for (uint32_t tries = 0; tries < 1u << 20; tries++) {
		uint32_t r = next_ref++;
		if (r == 0 || r >= 1u << 30) {
			next_ref = 1;
			continue;
		}
		char path[PATH_MAX];
		if (grant_path(path, sizeof(path), dir, self, r) < 0)
			return -1;
		int fd =
		    open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0 && errno == EEXIST)
			continue;
		if (fd < 0)
			return -1;
		struct xe_grant_hdr hd;
		memset(&hd, 0, sizeof(hd));
		hd.magic = XE_MAGIC;
		hd.granter = self;
		hd.grantee = domid;
		hd.ref = r;
		hd.writable = writable != 0;
		struct stat st;
		if (ftruncate(fd, 2 * XE_PAGE) < 0 ||
		    pwrite(fd, &hd, sizeof(hd), 0) != (ssize_t)sizeof(hd) ||
		    fstat(fd, &st) < 0) {
			int e = errno;
			close(fd);
			unlink(path);
			errno = e;
			return -1;
		}
		*ref = r;
		*ino = st.st_ino;
		return fd;
	}
	errno = ENOSPC;
	return -1;
}

void *xengntshr_share_pages(xengntshr_handle *xgs, uint32_t domid, int count,
                            uint32_t *refs, int writable)
{
	if (xgs == NULL || count <= 0 || count > 65536) {
		errno = EINVAL;
		return NULL;
	}
	char dir[PATH_MAX];
	uint32_t self = xe_domid();
	if (grant_dir(dir, sizeof(dir)) < 0)
		return NULL;
	struct xe_map *m = new_map((uint32_t)count, self);
	if (m == NULL)
		return NULL;
	for (int i = 0; i < count; i++) {
		ino_t ino = 0;
		int fd =
		    new_grant(dir, self, domid, writable, &m->refs[i], &ino);
		if (i == 0)
			m->notify_ino = ino;
		void *at = m->reserve + ((size_t)i + 1) * XE_PAGE;
		if (fd < 0 ||
		    mmap(at, XE_PAGE, PROT_READ | PROT_WRITE,
		         MAP_SHARED | MAP_FIXED, fd, XE_PAGE) == MAP_FAILED) {
			int e = errno;
			if (fd >= 0)
				close(fd);
			unshare_files(m);
			drop(m, 1);
			errno = e;
			return NULL;
		}
		close(fd);
		refs[i] = m->refs[i];
	}
	m->next = xgs->maps;
	xgs->maps = m;
	return m->reserve + XE_PAGE;
}

void *xengntshr_share_page_notify(xengntshr_handle *xgs, uint32_t domid,
                                  uint32_t *ref, int writable,
                                  uint32_t notify_offset,
                                  evtchn_port_t notify_port)
{
	void *p = xengntshr_share_pages(xgs, domid, 1, ref, writable);
	return arm_notify(xgs, p, 0, notify_offset, notify_port);
}

int xengntshr_unshare(xengntshr_handle *xgs, void *start_address,
                      uint32_t count)
{
	struct xe_map *m = take_map(xgs, start_address, count);
	if (m == NULL)
		return -1;
	unshare_files(m);
	drop(m, 1);
	return 0;
}

/* Present only in the emulation: tests call it to make sure the library
 * loaded is this one and not the real libxengnttab. */
int conduit_xen_emulation(void);
int conduit_xen_emulation(void)
{
	return 1;
}
