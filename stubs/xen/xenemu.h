/*
 * xenemu.h - private to the user-space Xen emulation in stubs/xen: what
 * the three libraries (grant tables, event channels, XenStore) share.
 *
 * The emulation lets the unmodified libxenvchan run between ordinary
 * processes, each playing one Xen domain.  Its state lives in one
 * directory standing for the host:
 *
 *   CONDUIT_XEN_DIR    the host directory (required; made if missing)
 *   CONDUIT_XEN_DOMID  this process's domain id (default 0, the
 *                      privileged domain)
 *
 * What the host directory must be:
 *   - one per emulated host, shared by every process playing one of its
 *     domains, and there for as long as any of them runs.  Event ports
 *     are named after its device and inode, so two paths to the same
 *     directory are one host, and two directories never meet;
 *   - on a file system whose files can be mapped shared (grant pages are
 *     MAP_SHARED mappings of files): tmpfs or a local disk;
 *   - preferably on a RAM file system, /dev/shm where it exists: grant
 *     pages and XenStore nodes are files, created, mapped and removed for
 *     every ring (a ring of 64 KiB each way is 33 grant files), and on a
 *     disk setting up a connection is several times slower;
 *   - private to the user: it is made with mode 0700, and anything that
 *     can write there can forge any domain's grants and XenStore.
 * A clean close removes the grant files; the XenStore tree (xs/, xs.lock)
 * stays until whoever made the directory removes it.
 *
 * In that directory, grant/<granter>-<ref> is one granted page (a header
 * page, then the page itself), xs/ is the XenStore tree, and xs.lock
 * serialises XenStore access.  Event channels are abstract Unix sockets
 * named after the directory's device and inode, so they leave no files
 * and vanish with the process that holds them.
 */
#ifndef CONDUIT_XENEMU_H
#define CONDUIT_XENEMU_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#define XE_PAGE  4096u
#define XE_MAGIC 0x58454d55u /* "XEMU" */

/* The header page of a grant file.  notify[0] is the granter's unmap
 * notification, notify[1] the mapper's: a byte to clear in the page when
 * that side goes away, and the event port it was bound to then, which is
 * how the survivor finds the entry when the channel reports a dead
 * peer. */
struct xe_grant_hdr {
	uint32_t magic;
	uint32_t granter;
	uint32_t grantee;
	uint32_t ref;
	uint32_t writable;
	struct {
		uint32_t active;
		uint32_t offset;
		uint32_t port;
	} notify[2];
};

/* The host directory, or NULL (errno set) when CONDUIT_XEN_DIR is unset.
 * The string is static. */
const char *xe_dir(void);
/* This process's domain id. */
uint32_t xe_domid(void);
/* dir/sub made if missing; path written to buf.  0 or -1 (errno). */
int xe_subdir(const char *sub, char *buf, size_t len);
/* The abstract socket address of event port (domid, port). */
socklen_t xe_evtchn_addr(struct sockaddr_un *sa, uint32_t domid, uint32_t port);
/* Write side's notify record (and only it) into the grant file fd. */
int xe_notify_put(int fd, int side, uint32_t active, uint32_t offset,
                  uint32_t port);
/* Note that this process plays domain d, so that the emulated libxenctrl
 * lists it as existing while the process runs (dom/<d>-<pid>). */
void xe_domain_mark(uint32_t d);
/* The peer domain `dead` (its port `port`) went away: clear the bytes it
 * asked to have cleared in grants shared with domain `self`. */
void xe_peer_died(uint32_t self, uint32_t dead, uint32_t port);

#endif
