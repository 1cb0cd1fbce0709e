/*
 * nng.c - nng, the peer a user would otherwise pick, as the third variant
 * of the host-socket figures: pair1 sockets over ipc://, tcp:// and
 * tls+tcp:// (a benchmark-only dependency, never one of the library).
 * nng moves messages, not a byte stream: every write is one nng_send() of
 * the write size and every read one nng_recv(); throughput counts payload
 * bytes only.  nng cannot run in a process that forks after nng has
 * started (it refuses), so its client is a forked process, pinned to the
 * CPU the other variants' client uses.
 *
 * The suite.  nng offers no way to choose a cipher suite, and its default
 * list would negotiate another suite (and curve) than conduit's.  So the
 * call nng makes to set each TLS connection up, mbedtls_ssl_setup(), is
 * redirected for nng alone: its entry in libnng's own table of imported
 * functions (the GOT slot the dynamic linker filled) is pointed at
 * pinned_ssl_setup(), which pins the connection's configuration to the
 * suite, curve and version every variant uses, counts it, and calls
 * mbedTLS's own function.  Nothing else in the process goes through it:
 * conduit's and raw mbedTLS's calls bind to mbedTLS directly, and
 * link_connect() checks that a conduit connection was not counted.
 */
#include "sock.h"

#include <nng/nng.h>
#include <nng/protocol/pair1/pair.h>
#include <nng/supplemental/tls/tls.h>
#ifdef CONDUIT_HAVE_TLS
#include <mbedtls/ssl.h>
#endif

#include <arpa/inet.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* The suite pinned on nng's connections alone                          */

static pthread_mutex_t pin_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long pin_setups;
/* Pinning only while the TLS figures run: other sections' TLS flows keep
 * conduit's own configuration. */
static bool pin_active;

void nng_pin(bool on)
{
	pthread_mutex_lock(&pin_lock);
	pin_active = on;
	pthread_mutex_unlock(&pin_lock);
}

unsigned long nng_pinned(void)
{
	pthread_mutex_lock(&pin_lock);
	unsigned long n = pin_setups;
	pthread_mutex_unlock(&pin_lock);
	return n;
}

#ifdef CONDUIT_HAVE_TLS
/* Why the pinning could not be installed, or NULL. */
static const char *pin_missing;

static int pinned_ssl_setup(mbedtls_ssl_context *ssl,
                            const mbedtls_ssl_config *conf)
{
	/* nng sets connections up in its own threads; the lock keeps two
	 * of them from writing one configuration at once. */
	pthread_mutex_lock(&pin_lock);
	if (pin_active) {
		pin_conf((mbedtls_ssl_config *)(uintptr_t)conf);
		pin_setups++;
	}
	pthread_mutex_unlock(&pin_lock);
	return mbedtls_ssl_setup(ssl, conf);
}

#if defined(__x86_64__)
#define SLOT_JUMP R_X86_64_JUMP_SLOT
#define SLOT_DATA R_X86_64_GLOB_DAT
#elif defined(__aarch64__)
#define SLOT_JUMP R_AARCH64_JUMP_SLOT
#define SLOT_DATA R_AARCH64_GLOB_DAT
#endif

#if defined(SLOT_JUMP) && __WORDSIZE == 64
/* Where libnng keeps the address of the function it imports as sym. */
struct slot_search {
	const char *lib, *sym;
	void **slot;
	bool relro; /* the slot is in the read-only-after-relocation part */
	uintptr_t relro_start, relro_end;
};

/* A dynamic entry's address: glibc has relocated most of them in place,
 * others still hold the offset from the object's base. */
static const void *dyn_ptr(ElfW(Addr) base, ElfW(Addr) v)
{
	return (const void *)(v < base ? base + v : v);
}

static int slot_in(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct slot_search *q = arg;
	(void)size;
	if (info->dlpi_name == NULL || strstr(info->dlpi_name, q->lib) == NULL)
		return 0;
	ElfW(Addr) base = info->dlpi_addr;
	const ElfW(Dyn) *dyn = NULL;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type == PT_DYNAMIC)
			dyn = (const ElfW(Dyn) *)(base + ph->p_vaddr);
		if (ph->p_type == PT_GNU_RELRO) {
			q->relro_start = base + ph->p_vaddr;
			q->relro_end = q->relro_start + ph->p_memsz;
		}
	}
	const ElfW(Sym) *syms = NULL;
	const char *strs = NULL;
	const ElfW(Rela) * rel[2] = {NULL, NULL};
	size_t relsz[2] = {0, 0};
	for (; dyn != NULL && dyn->d_tag != DT_NULL; dyn++) {
		if (dyn->d_tag == DT_SYMTAB)
			syms = dyn_ptr(base, dyn->d_un.d_ptr);
		else if (dyn->d_tag == DT_STRTAB)
			strs = dyn_ptr(base, dyn->d_un.d_ptr);
		else if (dyn->d_tag == DT_JMPREL)
			rel[0] = dyn_ptr(base, dyn->d_un.d_ptr);
		else if (dyn->d_tag == DT_PLTRELSZ)
			relsz[0] = dyn->d_un.d_val;
		else if (dyn->d_tag == DT_RELA)
			rel[1] = dyn_ptr(base, dyn->d_un.d_ptr);
		else if (dyn->d_tag == DT_RELASZ)
			relsz[1] = dyn->d_un.d_val;
	}
	if (syms == NULL || strs == NULL)
		return 1;
	for (int t = 0; t < 2; t++)
		for (size_t i = 0;
		     rel[t] != NULL && i < relsz[t] / sizeof(*rel[t]); i++) {
			const ElfW(Rela) *r = &rel[t][i];
			unsigned long type = ELF64_R_TYPE(r->r_info);
			if ((type != SLOT_JUMP && type != SLOT_DATA) ||
			    strcmp(strs + syms[ELF64_R_SYM(r->r_info)].st_name,
			           q->sym) != 0)
				continue;
			q->slot = (void **)(base + r->r_offset);
			q->relro = (uintptr_t)q->slot >= q->relro_start &&
			           (uintptr_t)q->slot < q->relro_end;
			return 1;
		}
	return 1;
}

/* Point libnng's import of mbedtls_ssl_setup at pinned_ssl_setup. */
static int pin_install(void)
{
	struct slot_search q = {.lib = "libnng.", .sym = "mbedtls_ssl_setup"};
	dl_iterate_phdr(slot_in, &q);
	if (q.slot == NULL) {
		pin_missing = "libnng imports no mbedtls_ssl_setup";
		return -1;
	}
	long pg = sysconf(_SC_PAGESIZE);
	void *page = (void *)((uintptr_t)q.slot & ~(uintptr_t)(pg - 1));
	if (mprotect(page, (size_t)pg, PROT_READ | PROT_WRITE) != 0) {
		pin_missing = "libnng's import table cannot be written";
		return -1;
	}
	int (*fn)(mbedtls_ssl_context *, const mbedtls_ssl_config *) =
	    pinned_ssl_setup;
	memcpy(q.slot, &fn, sizeof(fn));
	if (q.relro)
		mprotect(page, (size_t)pg, PROT_READ);
	pin_missing = NULL;
	return 0;
}
#else
static int pin_install(void)
{
	pin_missing = "the suite pinning is not written for this machine";
	return -1;
}
#endif
#endif /* CONDUIT_HAVE_TLS */

/* ------------------------------------------------------------------ */
/* Sockets                                                             */

static int nng_fail(const char *what, int rv)
{
	return bench_fail("%s: %s", what, nng_strerror(rv));
}

/* One TLS configuration per role in each process, made on first use,
 * like conduit's per-context cache and raw mbedTLS's RT.  The version is
 * pinned with the suite (pin_setup): nng 1.5.2's own
 * nng_tls_config_version(TLS 1.2, TLS 1.2) makes every handshake fail. */
/* Unused in a build without TLS, which measures no tls+tcp figure. */
__attribute__((unused)) static int nng_tls_cfg(nng_tls_config **out,
                                               bool server)
{
	static nng_tls_config *cfg[2];
	int i = server ? 1 : 0;
	if (cfg[i] == NULL) {
		nng_tls_config *c = NULL;
		int rv = nng_tls_config_alloc(&c, server ? NNG_TLS_MODE_SERVER
		                                         : NNG_TLS_MODE_CLIENT);
		if (rv != 0)
			return nng_fail("nng_tls_config_alloc", rv);
		if (server)
			rv = nng_tls_config_own_cert(c, G.cert_pem, G.key_pem,
			                             NULL);
		else if ((rv = nng_tls_config_ca_chain(c, G.cert_pem, NULL)) ==
		             0 &&
		         (rv = nng_tls_config_server_name(c, TLS_NAME)) == 0)
			rv = nng_tls_config_auth_mode(
			    c, NNG_TLS_AUTH_MODE_REQUIRED);
		if (rv != 0) {
			nng_tls_config_free(c);
			return nng_fail("nng TLS configuration", rv);
		}
		cfg[i] = c;
	}
	*out = cfg[i];
	return 0;
}

/*
 * nng_close() drops what is still queued to send, and nng has no linger,
 * so a server that closed right after its last message (the receiver's
 * ack, the last echo) could lose it.  A server therefore waits, before it
 * closes, until its clients have gone: their pipes are counted here.
 */
static pthread_mutex_t pipes_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pipes_cond = PTHREAD_COND_INITIALIZER;
static unsigned pipes_added, pipes_removed;

static void nng_pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	(void)p;
	(void)arg;
	pthread_mutex_lock(&pipes_lock);
	if (ev == NNG_PIPE_EV_ADD_POST)
		pipes_added++;
	else if (ev == NNG_PIPE_EV_REM_POST)
		pipes_removed++;
	pthread_cond_broadcast(&pipes_cond);
	pthread_mutex_unlock(&pipes_lock);
}

/* Wait until at least want clients have come and every one has gone. */
int nng_wait_gone(unsigned want)
{
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += IO_TIMEOUT_MS / 1000;
	int r = 0;
	pthread_mutex_lock(&pipes_lock);
	/* Each pass is woken by an event or ends at the deadline. */
	for (int pass = 0; pass < 1000000 && r == 0; pass++) {
		if (pipes_added >= want && pipes_removed >= pipes_added)
			break;
		if (pthread_cond_timedwait(&pipes_cond, &pipes_lock, &dl) ==
		    ETIMEDOUT)
			r = bench_fail("nng: the client did not close within "
			               "%d ms",
			               IO_TIMEOUT_MS);
	}
	pthread_mutex_unlock(&pipes_lock);
	return r;
}

/* A pair1 socket whose waits are bounded like every other here. */
static int nng_sock(nng_socket *s, bool poly)
{
	int rv = poly ? nng_pair1_open_poly(s) : nng_pair1_open(s);
	if (rv != 0)
		return nng_fail("nng_pair1_open", rv);
	if ((rv = nng_socket_set_ms(*s, NNG_OPT_RECVTIMEO, IO_TIMEOUT_MS)) !=
	        0 ||
	    (rv = nng_socket_set_ms(*s, NNG_OPT_SENDTIMEO, IO_TIMEOUT_MS)) !=
	        0) {
		nng_close(*s);
		return nng_fail("nng socket options", rv);
	}
	return 0;
}

static int dial(nng_socket *s, enum transport tr, const char *uri)
{
	if (nng_sock(s, false) < 0)
		return -1;
	if (tr != T_TLS) {
		int rv = nng_dial(*s, uri, NULL, 0);
		if (rv == 0)
			return 0;
		nng_close(*s);
		return nng_fail(uri, rv);
	}
#ifdef CONDUIT_HAVE_TLS
	nng_dialer d;
	nng_tls_config *cfg = NULL;
	unsigned long before = nng_pinned();
	if (nng_tls_cfg(&cfg, false) < 0) {
		nng_close(*s);
		return -1;
	}
	int rv = nng_dialer_create(&d, *s, uri);
	if (rv == 0)
		rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg);
	if (rv == 0)
		rv = nng_dialer_start(d, 0);
	if (rv != 0) {
		nng_close(*s);
		return nng_fail(uri, rv);
	}
	if (nng_pinned() == before) {
		nng_close(*s);
		return bench_fail("nng's TLS connection did not go through the "
		                  "suite pinning; its suite is unknown");
	}
	return 0;
#else
	nng_close(*s);
	return bench_fail("%s: TLS is not built in", uri);
#endif
}

int nng_link_write(unsigned id, const void *buf, size_t len)
{
	nng_socket s = {.id = id};
	/* One message per write: nng copies the bytes into it. */
	int rv = nng_send(s, (void *)(uintptr_t)buf, len, 0);
	if (rv != 0)
		return nng_fail("nng_send", rv);
	return 0;
}

int nng_link_read(unsigned id, void *buf, size_t cap, size_t *got)
{
	nng_socket s = {.id = id};
	size_t sz = cap;
	int rv = nng_recv(s, buf, &sz, 0);
	if (rv != 0)
		return nng_fail("nng_recv", rv);
	if (sz > cap)
		return bench_fail("nng_recv: a message of %zu bytes, more than "
		                  "the %zu expected",
		                  sz, cap);
	if (sz == 0)
		return bench_fail("nng_recv: an empty message");
	*got = sz;
	return 1;
}

int nng_lsn_open(struct listener *L, enum transport tr, bool poly)
{
	char uri[URI_MAX];
	if (tr == T_UNIX) {
		int n = snprintf(uri, sizeof(uri), "ipc://%s", G.sock);
		if (n < 0 || (size_t)n >= sizeof(uri))
			return bench_fail("ipc://%s: path too long", G.sock);
		unlink(G.sock); /* a leftover of an earlier run */
	} else {
		snprintf(uri, sizeof(uri), "%s://127.0.0.1:0",
		         tr == T_TLS ? "tls+tcp" : "tcp");
	}
	nng_socket ns;
	if (nng_sock(&ns, poly) < 0)
		return -1;
	L->ns = ns.id;
	L->ns_open = true;
	nng_listener nl;
	int rv =
	    nng_pipe_notify(ns, NNG_PIPE_EV_ADD_POST, nng_pipe_event, NULL);
	if (rv == 0)
		rv = nng_pipe_notify(ns, NNG_PIPE_EV_REM_POST, nng_pipe_event,
		                     NULL);
	if (rv == 0)
		rv = nng_listener_create(&nl, ns, uri);
#ifdef CONDUIT_HAVE_TLS
	if (rv == 0 && tr == T_TLS) {
		nng_tls_config *cfg = NULL;
		if (nng_tls_cfg(&cfg, true) < 0)
			return -1;
		rv = nng_listener_set_ptr(nl, NNG_OPT_TLS_CONFIG, cfg);
	}
#endif
	if (rv == 0)
		rv = nng_listener_start(nl, 0);
	if (rv != 0)
		return nng_fail(uri, rv);
	if (tr == T_UNIX) {
		snprintf(L->uri, sizeof(L->uri), "%s", uri);
		return 0;
	}
	nng_sockaddr sa;
	rv = nng_listener_get_addr(nl, NNG_OPT_LOCADDR, &sa);
	if (rv != 0)
		return nng_fail("nng listener address", rv);
	L->port = ntohs(sa.s_in.sa_port);
	snprintf(L->uri, sizeof(L->uri), "%s://127.0.0.1:%d",
	         tr == T_TLS ? "tls+tcp" : "tcp", L->port);
	return 0;
}

int nng_dial_uri(unsigned *ns, enum transport tr, const char *uri)
{
	nng_socket s;
	if (dial(&s, tr, uri) < 0)
		return -1;
	*ns = s.id;
	return 0;
}

void nng_link_close(unsigned id)
{
	nng_socket s = {.id = id};
	nng_close(s);
}

int nng_serve_accept(struct listener *L, uint64_t n, struct bench_report *rep)
{
	nng_socket s = {.id = L->ns};
	/* Each nng client sends one byte once connected; the answer goes
	 * back to the connection it came from (pair1 polyamorous). */
	for (uint64_t i = 0; i < n; i++) {
		nng_msg *m = NULL;
		int rv = nng_recvmsg(s, &m, 0);
		if (rv != 0)
			return nng_fail("nng_recvmsg", rv);
		if (nng_msg_len(m) != 1) {
			nng_msg_free(m);
			return bench_fail("nng: a greeting of %zu bytes, not 1",
			                  nng_msg_len(m));
		}
		if ((rv = nng_sendmsg(s, m, 0)) != 0) {
			nng_msg_free(m);
			return nng_fail("nng_sendmsg", rv);
		}
		rep->count++;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* The forked client                                                  */

enum run_kind { RUN_THROUGHPUT, RUN_LATENCY, RUN_CONNECT };

struct run_req {
	enum run_kind kind;
	enum transport tr;
	size_t ws;
	uint64_t total;
	unsigned warm, n;
};

struct shared_result {
	int32_t rc;
	double secs;
	char err[sizeof(bench_errmsg)];
	uint64_t samples[]; /* round-trip times */
};

static struct shared_result *SH;
static size_t sh_size;
static unsigned sh_samples; /* room in SH->samples */
static bool in_client;      /* this is a forked nng client */

int nng_shared_init(unsigned samples)
{
	sh_size = sizeof(*SH) + (size_t)samples * sizeof(SH->samples[0]);
	void *p = mmap(NULL, sh_size, PROT_READ | PROT_WRITE,
	               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return bench_fail("mmap: %s", strerror(errno));
	SH = p;
	sh_samples = samples;
	return 0;
}

static int run_forked(const struct run_req *q, double *secs, uint64_t *samples)
{
	if (SH == NULL || (q->kind == RUN_LATENCY && q->n > sh_samples))
		return bench_fail("no room for the nng client's results");
	memset(SH, 0, sizeof(*SH));
	SH->rc = -1;
	pid_t parent = getpid();
	fflush(NULL); /* or the child's copy of stdout could print again */
	pid_t pid = fork();
	if (pid < 0)
		return bench_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		bench_child_setup(parent, G.cpu[0]);
		in_client = true;
		bench_errmsg[0] = '\0';
		int r;
		if (q->kind == RUN_THROUGHPUT)
			r = run_throughput(API_NNG, q->tr, q->ws, q->total,
			                   &SH->secs);
		else if (q->kind == RUN_LATENCY)
			r = run_latency(API_NNG, q->tr, q->warm, q->n,
			                SH->samples);
		else
			r = run_connect(API_NNG, q->tr, false, q->warm, q->n,
			                &SH->secs);
		snprintf(SH->err, sizeof(SH->err), "%s", bench_errmsg);
		SH->rc = r;
		_exit(r == 0 ? 0 : 1);
	}
	bench_child_pid = pid;
	int st = 0;
	pid_t w;
	do
		w = waitpid(pid, &st, 0);
	while (w < 0 && errno == EINTR);
	bench_child_pid = 0;
	if (w < 0)
		return bench_fail("waitpid: %s", strerror(errno));
	if (WIFSIGNALED(st))
		return bench_fail(
		    "the nng client was killed by signal %d (%s)%s%s",
		    WTERMSIG(st), strsignal(WTERMSIG(st)),
		    SH->err[0] ? ": " : "", SH->err);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || SH->rc != 0)
		return bench_fail("%s", SH->err[0] ? SH->err
		                                   : "the nng client failed");
	if (secs != NULL)
		*secs = SH->secs;
	if (samples != NULL)
		memcpy(samples, SH->samples, (size_t)q->n * sizeof(*samples));
	return 0;
}

#ifdef CONDUIT_HAVE_TLS
/* Whether this nng was built with TLS.  Asked in a child: nng may not
 * start in this process, which forks afterwards. */
static bool nng_has_tls(int *why)
{
	pid_t parent = getpid();
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		*why = -1;
		return false;
	}
	if (pid == 0) {
		bench_child_setup(parent, -1);
		nng_tls_config *c = NULL;
		int rv = nng_tls_config_alloc(&c, NNG_TLS_MODE_SERVER);
		if (rv == 0)
			nng_tls_config_free(c);
		_exit(rv > 0 && rv < 256 ? rv : rv == 0 ? 0 : 255);
	}
	int st = 0;
	pid_t w;
	do
		w = waitpid(pid, &st, 0);
	while (w < 0 && errno == EINTR);
	*why = w == pid && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	return *why == 0;
}
#endif

void nng_shared_free(void)
{
	if (SH != NULL)
		munmap(SH, sh_size);
	SH = NULL;
}

bool nng_in_client(void)
{
	return in_client;
}

int nng_run_throughput(enum transport tr, size_t ws, uint64_t total,
                       double *secs)
{
	struct run_req q = {RUN_THROUGHPUT, tr, ws, total, 0, 0};
	return run_forked(&q, secs, NULL);
}

int nng_run_latency(enum transport tr, unsigned warm, unsigned n,
                    uint64_t *samples)
{
	struct run_req q = {RUN_LATENCY, tr, 0, 0, warm, n};
	return run_forked(&q, NULL, samples);
}

int nng_run_connect(enum transport tr, unsigned warm, unsigned n, double *secs)
{
	struct run_req q = {RUN_CONNECT, tr, 0, 0, warm, n};
	return run_forked(&q, secs, NULL);
}

static char tls_why[320];

void nng_tls_setup(void)
{
#ifdef CONDUIT_HAVE_TLS
	int why = 0;
	G.nng_tls = nng_has_tls(&why);
	if (!G.nng_tls) {
		snprintf(tls_why, sizeof(tls_why),
		         "nng: this build of nng has no TLS "
		         "(nng_tls_config_alloc: %s); its tls+tcp column "
		         "says n/a.",
		         why > 0 ? nng_strerror(why) : "the probe failed");
	} else if (pin_install() < 0) {
		G.nng_tls = false;
		snprintf(tls_why, sizeof(tls_why),
		         "nng: its TLS connections cannot be pinned to the "
		         "suite (%s); its tls+tcp column says n/a.",
		         pin_missing);
	}
#endif
}

const char *nng_tls_missing(void)
{
	return G.nng_tls ? NULL : tls_why;
}

void nng_json(void)
{
	printf("  \"nng\": {\"built\": true, \"version\": \"%s\", "
	       "\"tls\": %s, \"protocol\": \"pair1\"},\n",
	       nng_version_text(), G.nng_tls ? "true" : "false");
}

const char *nng_version_text(void)
{
	static char v[32];
	snprintf(v, sizeof(v), "%d.%d.%d", NNG_MAJOR_VERSION, NNG_MINOR_VERSION,
	         NNG_PATCH_VERSION);
	return v;
}
