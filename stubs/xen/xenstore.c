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
 * ocaml-conduit's deployments set it up).
 *
 * Watches, with xenstored's semantics: registering one fires it once at
 * once; a write (or mkdir, or permission change) of a node fires the
 * watches on it and on its ancestors, for a watcher allowed to read the
 * node; a removal fires those too and the watches below the removed
 * node, with their own path.  A relative watch is told relative paths.
 * A handle with watches has a datagram socket (abstract, named after the
 * host directory as event ports are) and an entry in <host dir>/watch
 * named "<domid>-<pid>-<n>"; whoever changes a node sends the path to
 * every entry, and each handle matches it against its own watches.  The
 * socket is xs_fileno(); xs_check_watch() takes from it without blocking,
 * xs_read_watch() waits for it.  When a watcher's queue is full the
 * sender leaves "<entry>.lost" beside the entry, and the watcher then
 * fires every one of its watches (a spurious event, which xenstored's
 * clients must take anyway, rather than a lost one).  Entries of
 * processes that died are removed by the next sender.
 *
 * A handle that watches is for watching: real libxenstore gives it a
 * reader thread, and on Xen 4.17 a transaction started on such a handle
 * failed (XBT_NULL, EINVAL) and left the handle closed, every request
 * after it failing with EBADF.  So here: xs_transaction_start on a
 * handle with a watch fails with EINVAL and breaks the handle, and its
 * transactions after that fail with EBADF.
 */
#include "xenemu.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <xenstore.h>

#define XS_PATH_MAX  3072
#define XS_PERMS_MAX 64

struct xs_watch {
	char *path; /* absolute, or "@..." */
	char *token;
	bool rel; /* registered relative: told relative paths */
};

struct xs_event {
	char *path, *token;
};

struct xs_handle {
	int lockfd;
	uint32_t domid;
	int in_tx;
	bool broken; /* a transaction was started while it watched */
	char root[PATH_MAX];
	char watchdir[PATH_MAX]; /* <host dir>/watch, made at open */
	/* watches */
	int wfd;        /* the datagram socket, -1 until needed */
	char wname[64]; /* its entry in <host dir>/watch */
	size_t nw;
	struct xs_watch *w;
	size_t nq, qcap; /* events matched, not handed out yet */
	struct xs_event *q;
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

/* ---- Watches: the sending side --------------------------------------- */

static socklen_t watch_addr(struct sockaddr_un *sa, const char *entry)
{
	struct stat st;
	const char *d = xe_dir();
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (d == NULL || stat(d, &st) < 0)
		memset(&st, 0, sizeof(st));
	int n = snprintf(sa->sun_path + 1, sizeof(sa->sun_path) - 1,
	                 "conduit-xen/%llx/%llx/watch/%s",
	                 (unsigned long long)st.st_dev,
	                 (unsigned long long)st.st_ino, entry);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
	                   (size_t)n);
}

/* Node abs changed (removed, if rm): tell every watching handle.  Called
 * with the lock held, after the change. */
static void fire(const struct xs_handle *h, const char *abs, bool rm)
{
	const char *dir = h->watchdir;
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	/* The node's permissions and a socket, once there is a watcher. */
	struct nperms np;
	bool have_perms = false;
	char msg[XS_PATH_MAX + 2];
	int len = snprintf(msg, sizeof(msg), "%c%s", rm ? 'R' : 'C', abs);
	int fd = -1;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		unsigned dom;
		if (de->d_name[0] == '.' || strchr(de->d_name, '.') != NULL ||
		    sscanf(de->d_name, "%u-", &dom) != 1)
			continue;
		if (fd < 0) {
			fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
			if (fd < 0)
				break;
			have_perms = !rm && read_perms(h, abs, &np);
		}
		/* xenstored tells of a change only those who may read the
		 * node. */
		if (have_perms && !allowed(&np, dom, XS_PERM_READ))
			continue;
		struct sockaddr_un sa;
		socklen_t sl = watch_addr(&sa, de->d_name);
		ssize_t r;
		do
			r = sendto(fd, msg, (size_t)len + 1,
			           MSG_DONTWAIT | MSG_NOSIGNAL,
			           (struct sockaddr *)&sa, sl);
		while (r < 0 && errno == EINTR);
		char f[PATH_MAX + 300];
		if (r < 0 && errno == ECONNREFUSED) {
			/* Its process is gone. */
			snprintf(f, sizeof(f), "%s/%s", dir, de->d_name);
			unlink(f);
		} else if (r < 0 && errno == EAGAIN) {
			snprintf(f, sizeof(f), "%s/%s.lost", dir, de->d_name);
			close(open(f, O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
		}
	}
	if (fd >= 0)
		close(fd);
	closedir(d);
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
	h->wfd = -1;
	if (xe_subdir("watch", h->watchdir, sizeof(h->watchdir)) < 0) {
		free(h);
		return NULL;
	}
	xe_domain_mark(h->domid);
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

static void drop_events(struct xs_handle *h)
{
	for (size_t i = 0; i < h->nq; i++) {
		free(h->q[i].path);
		free(h->q[i].token);
	}
	h->nq = 0;
}

void xs_close(struct xs_handle *xsh)
{
	if (xsh == NULL)
		return;
	if (xsh->wfd >= 0) {
		char f[PATH_MAX + 80];
		snprintf(f, sizeof(f), "%s/%s", xsh->watchdir, xsh->wname);
		unlink(f);
		snprintf(f, sizeof(f), "%s/%s.lost", xsh->watchdir, xsh->wname);
		unlink(f);
		close(xsh->wfd);
	}
	for (size_t i = 0; i < xsh->nw; i++) {
		free(xsh->w[i].path);
		free(xsh->w[i].token);
	}
	free(xsh->w);
	drop_events(xsh);
	free(xsh->q);
	close(xsh->lockfd); /* drops a transaction's lock too */
	free(xsh);
}

/* ---- Watches: the watching side -------------------------------------- */

/* The socket and the entry; 0 or -1 (errno). */
static int watch_socket(struct xs_handle *h)
{
	if (h->wfd >= 0)
		return 0;
	static unsigned seq;
	char f[PATH_MAX + 80];
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	snprintf(h->wname, sizeof(h->wname), "%u-%ld-%u", h->domid,
	         (long)getpid(), __atomic_fetch_add(&seq, 1, __ATOMIC_RELAXED));
	struct sockaddr_un sa;
	socklen_t sl = watch_addr(&sa, h->wname);
	snprintf(f, sizeof(f), "%s/%s", h->watchdir, h->wname);
	int efd = -1;
	if (bind(fd, (struct sockaddr *)&sa, sl) < 0 ||
	    (efd = open(f, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	close(efd);
	h->wfd = fd;
	return 0;
}

int xs_fileno(struct xs_handle *h)
{
	return watch_socket(h) < 0 ? -1 : h->wfd;
}

static bool queue_event(struct xs_handle *h, const char *path,
                        const struct xs_watch *w)
{
	if (h->nq == h->qcap) {
		size_t cap = h->qcap ? h->qcap * 2 : 8;
		struct xs_event *nq = realloc(h->q, cap * sizeof(*nq));
		if (nq == NULL)
			return false;
		h->q = nq;
		h->qcap = cap;
	}
	char rel[XS_PATH_MAX + 64];
	int n = snprintf(rel, sizeof(rel), "/local/domain/%u/", h->domid);
	if (w->rel && strncmp(path, rel, (size_t)n) == 0)
		path += n;
	struct xs_event *ev = &h->q[h->nq];
	ev->path = strdup(path);
	ev->token = strdup(w->token);
	if (ev->path == NULL || ev->token == NULL) {
		free(ev->path);
		free(ev->token);
		return false;
	}
	h->nq++;
	return true;
}

/* a is b or below it. */
static bool under(const char *a, const char *b)
{
	size_t n = strlen(b);
	if (strcmp(b, "/") == 0)
		return a[0] == '/';
	return strncmp(a, b, n) == 0 && (a[n] == '\0' || a[n] == '/');
}

/* One message from the socket: queue the events it makes. */
static void take_message(struct xs_handle *h, const char *msg, size_t len)
{
	if (len < 2 || msg[len - 1] != '\0')
		return;
	const char *node = msg + 1;
	if (msg[0] == 'I') {
		/* A new watch's first event: "I<path>\0<token>\0" is
		 * only sent to oneself, so it is read as a whole. */
		size_t pl = strlen(node);
		const char *token = node + pl + 1;
		for (size_t i = 0; pl + 2 < len && i < h->nw; i++)
			if (strcmp(h->w[i].path, node) == 0 &&
			    strcmp(h->w[i].token, token) == 0) {
				queue_event(h, node, &h->w[i]);
				break;
			}
		return;
	}
	bool rm = msg[0] == 'R';
	for (size_t i = 0; i < h->nw; i++) {
		const struct xs_watch *w = &h->w[i];
		if (under(node, w->path))
			queue_event(h, node, w);
		else if (rm && under(w->path, node))
			queue_event(h, w->path, w);
	}
}

char **xs_check_watch(struct xs_handle *h)
{
	if (h->nq == 0 && h->wfd >= 0) {
		char f[PATH_MAX + 80];
		snprintf(f, sizeof(f), "%s/%s.lost", h->watchdir, h->wname);
		if (unlink(f) == 0)
			for (size_t i = 0; i < h->nw; i++)
				queue_event(h, h->w[i].path, &h->w[i]);
	}
	static char msg[XS_PATH_MAX + 1024];
	while (h->nq == 0 && h->wfd >= 0) {
		ssize_t r = recv(h->wfd, msg, sizeof(msg), MSG_DONTWAIT);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			break;
		take_message(h, msg, (size_t)r);
	}
	if (h->nq == 0) {
		errno = EAGAIN;
		return NULL;
	}
	/* The first event, in one block: two pointers, then the strings
	 * (the caller frees the block). */
	struct xs_event ev = h->q[0];
	memmove(h->q, h->q + 1, (h->nq - 1) * sizeof(*h->q));
	h->nq--;
	size_t pl = strlen(ev.path) + 1, tl = strlen(ev.token) + 1;
	char **out = malloc(2 * sizeof(char *) + pl + tl);
	if (out != NULL) {
		char *p = (char *)(out + 2);
		out[XS_WATCH_PATH] = memcpy(p, ev.path, pl);
		out[XS_WATCH_TOKEN] = memcpy(p + pl, ev.token, tl);
	}
	free(ev.path);
	free(ev.token);
	return out;
}

char **xs_read_watch(struct xs_handle *h, unsigned int *num)
{
	if (watch_socket(h) < 0)
		return NULL;
	for (;;) {
		char **ev = xs_check_watch(h);
		if (ev != NULL) {
			if (num != NULL)
				*num = 2;
			return ev;
		}
		if (errno != EAGAIN)
			return NULL;
		struct pollfd p = {h->wfd, POLLIN, 0};
		if (poll(&p, 1, -1) < 0 && errno != EINTR)
			return NULL;
	}
}

bool xs_watch(struct xs_handle *h, const char *path, const char *token)
{
	char abs[XS_PATH_MAX + 64];
	bool special = path != NULL && path[0] == '@';
	if (special) {
		if (strlen(path) >= sizeof(abs)) {
			errno = EINVAL;
			return false;
		}
		strcpy(abs, path);
	} else if (!norm(h, path, abs, sizeof(abs))) {
		return false;
	}
	if (token == NULL || watch_socket(h) < 0)
		return false;
	struct xs_watch *nw = realloc(h->w, (h->nw + 1) * sizeof(*nw));
	if (nw == NULL)
		return false;
	h->w = nw;
	struct xs_watch *w = &h->w[h->nw];
	w->path = strdup(abs);
	w->token = strdup(token);
	w->rel = !special && path[0] != '/';
	if (w->path == NULL || w->token == NULL) {
		free(w->path);
		free(w->token);
		errno = ENOMEM;
		return false;
	}
	h->nw++;
	/* xenstored fires a new watch once, at once: sent to ourselves so
	 * that the descriptor says so. */
	char msg[XS_PATH_MAX + 1024];
	int n = snprintf(msg, sizeof(msg), "I%s%c%s", abs, '\0', token);
	struct sockaddr_un sa;
	socklen_t sl = watch_addr(&sa, h->wname);
	if (n < 0 || (size_t)n >= sizeof(msg) ||
	    sendto(h->wfd, msg, (size_t)n + 1, MSG_DONTWAIT | MSG_NOSIGNAL,
	           (struct sockaddr *)&sa, sl) < 0)
		queue_event(h, abs, w);
	return true;
}

bool xs_unwatch(struct xs_handle *h, const char *path, const char *token)
{
	char abs[XS_PATH_MAX + 64];
	if (path != NULL && path[0] == '@')
		snprintf(abs, sizeof(abs), "%s", path);
	else if (!norm(h, path, abs, sizeof(abs)))
		return false;
	for (size_t i = 0; token != NULL && i < h->nw; i++)
		if (strcmp(h->w[i].path, abs) == 0 &&
		    strcmp(h->w[i].token, token) == 0) {
			free(h->w[i].path);
			free(h->w[i].token);
			h->w[i] = h->w[--h->nw];
			/* Events of it not handed out yet go too. */
			for (size_t j = 0; j < h->nq;)
				if (strcmp(h->q[j].token, token) == 0) {
					free(h->q[j].path);
					free(h->q[j].token);
					h->q[j] = h->q[--h->nq];
				} else {
					j++;
				}
			return true;
		}
	errno = ENOENT;
	return false;
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
	if (ok)
		fire(h, abs, false);
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
	bool made = !exists(h, abs);
	bool ok = !made || create_path(h, abs, h->domid);
	int e = errno;
	if (ok && made)
		fire(h, abs, false);
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
		fire(h, abs, true);
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
	if (ok)
		fire(h, abs, false);
	unlock(h);
	errno = e;
	return ok;
}

xs_transaction_t xs_transaction_start(struct xs_handle *h)
{
	if (h->broken) {
		errno = EBADF;
		return XBT_NULL;
	}
	if (h->nw > 0) {
		h->broken = true;
		errno = EINVAL;
		return XBT_NULL;
	}
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
