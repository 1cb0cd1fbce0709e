/*
 * xenstore.c - libxenstore.so.4 of the Xen emulation: a XenStore kept as
 * a directory tree under <host dir>/xs, with Xen's permission model.
 *
 * Node /a/b is the directory xs/a/b; its value is the file "#v" in it and
 * its permissions the file "#p" ('#' never occurs in XenStore names).
 * Permissions are checked by domain id, never by file mode (everything
 * runs as the same user here), with xenstored's rules: domain 0 may do
 * anything; a node's owner (first entry) may read and write it; another
 * domain gets the rights of its own entry, else those of the first entry;
 * creating a node needs write access to its parent, and the new node
 * takes its parent's permissions with the creator as owner; only the
 * owner (or domain 0) may set permissions, and only domain 0 may give a
 * node to another domain.  A path without a leading '/' is relative to
 * /local/domain/<own id>.
 *
 * Every call holds an exclusive lock on xs.lock; a transaction holds it
 * from start to end, so transactions are serialised and never conflict
 * (EAGAIN never happens).  Aborting a transaction does not undo the
 * writes made in it: nothing that uses this emulation aborts.
 *
 * What the toolstack does when it builds a domain is done by xs_open:
 * /local/domain/<id> owned by the domain, with its "domid" key, and
 * /conduit (owner 0, readable and writable by every domain, as
 * ocaml-conduit's deployments set it up).  Watches are not emulated.
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
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xenstore.h>

#define XS_PATH_MAX  3072
#define XS_PERMS_MAX 64

struct xs_handle {
	int lockfd;
	uint32_t domid;
	int in_tx;
	char root[PATH_MAX];
};

struct nperms {
	unsigned n;
	struct xs_permissions p[XS_PERMS_MAX];
};

/* ---- Paths --------------------------------------------------------- */

/* The absolute XenStore path for `path` into abs; false (errno) if it is
 * not a valid path. */
static bool norm(const struct xs_handle *h, const char *path, char *abs,
                 size_t len)
{
	size_t n;
	if (path == NULL)
		goto bad;
	if (path[0] == '/')
		n = (size_t)snprintf(abs, len, "%s", path);
	else
		n = (size_t)snprintf(abs, len, "/local/domain/%u/%s", h->domid,
		                     path);
	if (n >= len || n > XS_PATH_MAX)
		goto bad;
	for (size_t i = 0; i < n; i++) {
		char c = abs[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		          (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		          c == '@' || c == '/';
		if (!ok || (c == '/' && abs[i + 1] == '/'))
			goto bad;
	}
	if (n > 1 && abs[n - 1] == '/')
		goto bad;
	return true;
bad:
	errno = EINVAL;
	return false;
}

/* The directory of a node (abs is at most XS_PATH_MAX bytes, checked by
 * norm(), and every caller's buffer has room for root plus that). */
static void fspath(const struct xs_handle *h, const char *abs, char *out,
                   size_t len)
{
	size_t r = strlen(h->root);
	size_t a = strcmp(abs, "/") == 0 ? 0 : strlen(abs);
	if (r + a + 1 > len) {
		out[0] = '\0';
		return;
	}
	memcpy(out, h->root, r);
	memcpy(out + r, abs, a);
	out[r + a] = '\0';
}

static bool exists(const struct xs_handle *h, const char *abs)
{
	char fs[PATH_MAX + XS_PATH_MAX];
	struct stat st;
	fspath(h, abs, fs, sizeof(fs));
	return stat(fs, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool read_perms(const struct xs_handle *h, const char *abs,
                       struct nperms *np)
{
	char fs[PATH_MAX + XS_PATH_MAX + 4];
	fspath(h, abs, fs, sizeof(fs));
	strcat(fs, "/#p");
	int fd = open(fs, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t r = read(fd, np, sizeof(*np));
	close(fd);
	if (r < (ssize_t)sizeof(unsigned) || np->n == 0 ||
	    np->n > XS_PERMS_MAX) {
		errno = EIO;
		return false;
	}
	return true;
}

/* Write a small file atomically (temporary name, then rename). */
static bool put_file(const char *dir, const char *name, const void *data,
                     size_t len)
{
	char tmp[PATH_MAX + XS_PATH_MAX + 16], dst[PATH_MAX + XS_PATH_MAX + 8];
	snprintf(tmp, sizeof(tmp), "%s/#t", dir);
	snprintf(dst, sizeof(dst), "%s/%s", dir, name);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return false;
	bool ok = write(fd, data, len) == (ssize_t)len;
	close(fd);
	if (!ok || rename(tmp, dst) < 0) {
		unlink(tmp);
		return false;
	}
	return true;
}

static bool write_perms(const struct xs_handle *h, const char *abs,
                        const struct nperms *np)
{
	char fs[PATH_MAX + XS_PATH_MAX];
	fspath(h, abs, fs, sizeof(fs));
	return put_file(fs, "#p", np,
	                sizeof(unsigned) +
	                    np->n * sizeof(struct xs_permissions));
}

static bool allowed(const struct nperms *np, uint32_t domid, unsigned want)
{
	if (domid == 0 || np->p[0].id == domid)
		return true;
	for (unsigned i = 1; i < np->n; i++)
		if (np->p[i].id == domid)
			return (np->p[i].perms & want) == want;
	return (np->p[0].perms & want) == want;
}

/* Check access to an existing node. */
static bool check(const struct xs_handle *h, const char *abs, unsigned want)
{
	struct nperms np;
	if (!exists(h, abs)) {
		errno = ENOENT;
		return false;
	}
	if (!read_perms(h, abs, &np))
		return false;
	if (!allowed(&np, h->domid, want)) {
		errno = EACCES;
		return false;
	}
	return true;
}

/* Make a node whose parent exists: checks write access to the parent. */
static bool create_one(const struct xs_handle *h, const char *abs,
                       uint32_t owner)
{
	char parent[XS_PATH_MAX + 2];
	snprintf(parent, sizeof(parent), "%s", abs);
	char *slash = strrchr(parent, '/');
	if (slash == parent)
		slash[1] = '\0';
	else
		*slash = '\0';
	struct nperms np;
	if (!check(h, parent, XS_PERM_WRITE) || !read_perms(h, parent, &np))
		return false;
	np.p[0].id = owner;
	char fs[PATH_MAX + XS_PATH_MAX];
	fspath(h, abs, fs, sizeof(fs));
	if (mkdir(fs, 0700) < 0)
		return false;
	if (!write_perms(h, abs, &np) || !put_file(fs, "#v", "", 0)) {
		int e = errno;
		char f[PATH_MAX + XS_PATH_MAX + 4];
		snprintf(f, sizeof(f), "%s/#p", fs);
		unlink(f);
		rmdir(fs);
		errno = e;
		return false;
	}
	return true;
}

/* Make a node and its missing ancestors. */
static bool create_path(const struct xs_handle *h, const char *abs,
                        uint32_t owner)
{
	char part[XS_PATH_MAX + 2];
	size_t n = strlen(abs);
	for (size_t i = 1; i <= n; i++) {
		if (abs[i] != '/' && abs[i] != '\0')
			continue;
		memcpy(part, abs, i);
		part[i] = '\0';
		if (!exists(h, part) && !create_one(h, part, owner))
			return false;
	}
	return true;
}

/* ---- Locking -------------------------------------------------------- */

static void lock(struct xs_handle *h)
{
	if (!h->in_tx)
		while (flock(h->lockfd, LOCK_EX) < 0 && errno == EINTR)
			;
}

static void unlock(struct xs_handle *h)
{
	if (!h->in_tx)
		flock(h->lockfd, LOCK_UN);
}

/* ---- The toolstack's part ------------------------------------------- */

static bool ensure(struct xs_handle *h, const char *abs, uint32_t owner,
                   unsigned others, const char *value)
{
	if (exists(h, abs))
		return true;
	char fs[PATH_MAX + XS_PATH_MAX];
	fspath(h, abs, fs, sizeof(fs));
	struct nperms np = {1, {{owner, others}}};
	if ((mkdir(fs, 0700) < 0 && errno != EEXIST) ||
	    !write_perms(h, abs, &np))
		return false;
	return put_file(fs, "#v", value, strlen(value));
}

static bool bootstrap(struct xs_handle *h)
{
	char dom[64], id[16];
	snprintf(dom, sizeof(dom), "/local/domain/%u", h->domid);
	snprintf(id, sizeof(id), "%u", h->domid);
	char domid_key[80];
	snprintf(domid_key, sizeof(domid_key), "%s/domid", dom);
	return ensure(h, "/", 0, XS_PERM_READ, "") &&
	       ensure(h, "/local", 0, XS_PERM_READ, "") &&
	       ensure(h, "/local/domain", 0, XS_PERM_READ, "") &&
	       ensure(h, dom, h->domid, XS_PERM_NONE, "") &&
	       ensure(h, domid_key, h->domid, XS_PERM_NONE, id) &&
	       ensure(h, "/conduit", 0, XS_PERM_READ | XS_PERM_WRITE, "");
}

/* ---- The API ---------------------------------------------------------- */

struct xs_handle *xs_open(unsigned long flags)
{
	(void)flags;
	char path[PATH_MAX];
	if (xe_subdir("xs", path, sizeof(path)) < 0)
		return NULL;
	struct xs_handle *h = calloc(1, sizeof(*h));
	if (h == NULL)
		return NULL;
	h->domid = xe_domid();
	snprintf(h->root, sizeof(h->root), "%s", path);
	snprintf(path, sizeof(path), "%s/xs.lock", xe_dir());
	h->lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (h->lockfd < 0) {
		free(h);
		return NULL;
	}
	lock(h);
	bool ok = bootstrap(h);
	unlock(h);
	if (!ok) {
		close(h->lockfd);
		free(h);
		return NULL;
	}
	return h;
}

void xs_close(struct xs_handle *xsh)
{
	if (xsh == NULL)
		return;
	close(xsh->lockfd); /* drops a transaction's lock too */
	free(xsh);
}

void *xs_read(struct xs_handle *h, xs_transaction_t t, const char *path,
              unsigned int *len)
{
	(void)t;
	char abs[XS_PATH_MAX + 64];
	if (!norm(h, path, abs, sizeof(abs)))
		return NULL;
	lock(h);
	char *out = NULL;
	if (check(h, abs, XS_PERM_READ)) {
		char fs[PATH_MAX + XS_PATH_MAX + 4];
		fspath(h, abs, fs, sizeof(fs));
		strcat(fs, "/#v");
		int fd = open(fs, O_RDONLY | O_CLOEXEC);
		struct stat st;
		if (fd >= 0 && fstat(fd, &st) == 0 &&
		    (out = malloc((size_t)st.st_size + 1)) != NULL) {
			ssize_t r = read(fd, out, (size_t)st.st_size);
			if (r < 0) {
				free(out);
				out = NULL;
			} else {
				out[r] = '\0';
				if (len != NULL)
					*len = (unsigned)r;
			}
		}
		if (fd >= 0)
			close(fd);
	}
	int e = errno;
	unlock(h);
	errno = e;
	return out;
}

bool xs_write(struct xs_handle *h, xs_transaction_t t, const char *path,
              const void *data, unsigned int len)
{
	(void)t;
	char abs[XS_PATH_MAX + 64];
	if (!norm(h, path, abs, sizeof(abs)))
		return false;
	lock(h);
	bool ok = exists(h, abs) ? check(h, abs, XS_PERM_WRITE)
	                         : create_path(h, abs, h->domid);
	if (ok) {
		char fs[PATH_MAX + XS_PATH_MAX];
		fspath(h, abs, fs, sizeof(fs));
		ok = put_file(fs, "#v", data, len);
	}
	int e = errno;
	unlock(h);
	errno = e;
	return ok;
}

bool xs_mkdir(struct xs_handle *h, xs_transaction_t t, const char *path)
{
	(void)t;
	char abs[XS_PATH_MAX + 64];
	if (!norm(h, path, abs, sizeof(abs)))
		return false;
	lock(h);
	bool ok = exists(h, abs) || create_path(h, abs, h->domid);
	int e = errno;
	unlock(h);
	errno = e;
	return ok;
}

static void remove_tree(const char *fs)
{
	DIR *d = opendir(fs);
	if (d != NULL) {
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 ||
			    strcmp(de->d_name, "..") == 0)
				continue;
			char sub[PATH_MAX + XS_PATH_MAX + 256];
			snprintf(sub, sizeof(sub), "%s/%s", fs, de->d_name);
			if (de->d_name[0] == '#')
				unlink(sub);
			else
				remove_tree(sub);
		}
		closedir(d);
	}
	rmdir(fs);
}

bool xs_rm(struct xs_handle *h, xs_transaction_t t, const char *path)
{
	(void)t;
	char abs[XS_PATH_MAX + 64];
	if (!norm(h, path, abs, sizeof(abs)))
		return false;
	if (strcmp(abs, "/") == 0) {
		errno = EINVAL;
		return false;
	}
	lock(h);
	bool ok = check(h, abs, XS_PERM_WRITE);
	if (ok) {
		char fs[PATH_MAX + XS_PATH_MAX];
		fspath(h, abs, fs, sizeof(fs));
		remove_tree(fs);
	}
	int e = errno;
	unlock(h);
	errno = e;
	return ok;
}

char **xs_directory(struct xs_handle *h, xs_transaction_t t, const char *path,
                    unsigned int *num)
{
	(void)t;
	char abs[XS_PATH_MAX + 64];
	if (!norm(h, path, abs, sizeof(abs)))
		return NULL;
	lock(h);
	char **out = NULL;
	if (check(h, abs, XS_PERM_READ)) {
		char fs[PATH_MAX + XS_PATH_MAX];
		fspath(h, abs, fs, sizeof(fs));
		DIR *d = opendir(fs);
		size_t n = 0, bytes = 0;
		struct dirent *de;
		/* One block: the pointers, then the strings (callers free
		 * only the array, as with the real library). */
		for (int pass = 0; d != NULL && pass < 2; pass++) {
			char *strs = out != NULL ? (char *)(out + n) : NULL;
			size_t i = 0;
			rewinddir(d);
			while ((de = readdir(d)) != NULL) {
				const char *nm = de->d_name;
				if (nm[0] == '.' || nm[0] == '#')
					continue;
				if (pass == 0) {
					n++;
					bytes += strlen(nm) + 1;
					continue;
				}
				out[i++] = strcpy(strs, nm);
				strs += strlen(nm) + 1;
			}
			if (pass == 0) {
				out = malloc(n * sizeof(char *) + bytes + 1);
				if (out == NULL)
					break;
			}
		}
		if (d != NULL)
			closedir(d);
		if (out != NULL && num != NULL)
			*num = (unsigned)n;
	}
	int e = errno;
	unlock(h);
	errno = e;
	return out;
}

struct xs_permissions *xs_get_permissions(struct xs_handle *h,
                                          xs_transaction_t t, const char *path,
                                          unsigned int *num)
{
	(void)t;
	char abs[XS_PATH_MAX + 64];
	if (!norm(h, path, abs, sizeof(abs)))
		return NULL;
	lock(h);
	struct nperms np;
	struct xs_permissions *out = NULL;
	if (check(h, abs, XS_PERM_READ) && read_perms(h, abs, &np) &&
	    (out = malloc(np.n * sizeof(*out))) != NULL) {
		memcpy(out, np.p, np.n * sizeof(*out));
		*num = np.n;
	}
	int e = errno;
	unlock(h);
	errno = e;
	return out;
}

bool xs_set_permissions(struct xs_handle *h, xs_transaction_t t,
                        const char *path, struct xs_permissions *perms,
                        unsigned int num_perms)
{
	(void)t;
	char abs[XS_PATH_MAX + 64];
	if (!norm(h, path, abs, sizeof(abs)))
		return false;
	if (num_perms == 0 || num_perms > XS_PERMS_MAX) {
		errno = EINVAL;
		return false;
	}
	lock(h);
	struct nperms cur, np;
	bool ok = check(h, abs, XS_PERM_WRITE) && read_perms(h, abs, &cur);
	if (ok && h->domid != 0 && cur.p[0].id != h->domid) {
		errno = EACCES;
		ok = false;
	}
	if (ok && h->domid != 0 && perms[0].id != cur.p[0].id) {
		errno = EPERM;
		ok = false;
	}
	if (ok) {
		np.n = num_perms;
		for (unsigned i = 0; i < num_perms; i++) {
			np.p[i].id = perms[i].id;
			np.p[i].perms =
			    perms[i].perms & (XS_PERM_READ | XS_PERM_WRITE);
		}
		ok = write_perms(h, abs, &np);
	}
	int e = errno;
	unlock(h);
	errno = e;
	return ok;
}

xs_transaction_t xs_transaction_start(struct xs_handle *h)
{
	if (h->in_tx) {
		errno = EBUSY;
		return XBT_NULL;
	}
	lock(h);
	h->in_tx = 1;
	return 1;
}

bool xs_transaction_end(struct xs_handle *h, xs_transaction_t t, bool abort)
{
	(void)abort;
	if (!h->in_tx || t != 1) {
		errno = EINVAL;
		return false;
	}
	h->in_tx = 0;
	unlock(h);
	return true;
}
