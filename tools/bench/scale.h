/*
 * scale.h - what the scale section's files share (scale.c: addresses,
 * raw sockets, memory; scale_idle.c: idle memory; scale_flows.c: 10,000
 * concurrent flows).
 */
#ifndef CONDUIT_TOOLS_BENCH_SCALE_H
#define CONDUIT_TOOLS_BENCH_SCALE_H

#include "bench.h"

#include <conduit/conduit.h>

#include <limits.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>

#if defined(__GLIBC__) &&                                                      \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
#define HAVE_MALLINFO2 1
#endif

#define IDLE_PAIRS        1000
#define TLS_IDLE_PAIRS    100
#define SCALE_FLOWS       10000
#define SCALE_FLOWS_QUICK 2000
/* Connects started whose greeting has not arrived yet. */
#define MAX_OUTSTANDING 1000
#define MSG_LEN         64
#define GREETING        '+'
/* A whole concurrency run: setup, round and teardown. */
#define SCALE_DEADLINE_MS 120000
/* Any single wait of the idle measurements. */
#define IO_MS 10000
/* Descriptors beyond the flows: listeners, pipes, what the caller has. */
#define FD_SPARE 256
/* Accepts per wake-up of the server, so flows already open get a turn. */
#define ACCEPT_BURST 256
/* Room for any URI here: a socket path is under 108 bytes, 3x encoded. */
#define URI_MAX_LEN 512

enum api { API_RAW, API_CONDUIT };
enum tr { TR_UNIX, TR_TCP };
extern const char *const scale_tr_name[];

struct addr {
	enum tr tr;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char uri[URI_MAX_LEN];
	struct sockaddr_storage sa;
	socklen_t salen;
};

/* The section's private directory (unix sockets). */
extern char S_dir[PATH_MAX];

__attribute__((format(printf, 1, 2))) int scale_fail(const char *fmt, ...);
int left_ms(uint64_t deadline, int cap);
long long heap_used(void);
long long rss_bytes(void);
void unix_uri(char *out, size_t cap, const char *scheme, const char *path);
int make_addr(struct addr *a, enum tr tr, const char *name);
void set_port(struct addr *a, int port);
int uri_port(const char *uri);
int raw_listen(struct addr *a);
int raw_connect_start(const struct addr *a, int *out);
int wait_fd(int fd, short events, int ms);
int raw_connect_wait(const struct addr *a, int *out);
int raw_accept_wait(int lfd, int *out);
int raw_send1(int fd, unsigned char b);
int raw_recv1(int fd, unsigned char want);
int flow_send1(conduit_flow *f, unsigned char b);
int flow_recv1(conduit_flow *f, unsigned char want);
int raise_nofile(rlim_t need, struct rlimit *old);
int read_full(int fd, void *buf, size_t len, int ms);
int reap(pid_t pid, int ms);

int idle_section(const struct bench_settings *s);
int scale_section(const struct bench_settings *s);

#endif
