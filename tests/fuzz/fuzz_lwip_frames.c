/*
 * fuzz_lwip_frames.c - Ethernet frames from another machine.  One lwIP
 * stack (kept across inputs, as a unikernel keeps its own) has a netif on
 * a datagram socketpair and a listener on 10.0.0.2:7; each input is cut
 * into frames (a two-byte length before each) written to the other end of
 * the pair, the stack runs, and whatever connection comes up is accepted,
 * read and answered.  The sanitizers watch the frame path: the netif's
 * input, lwIP's parsing, and conduit's flows above it.
 */
#include "fuzzkit.h"

#include <conduit/lwip.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static conduit_ctx *ctx;
static conduit_lwip *st;
static conduit_lwip_netif *nif;
static conduit_listener *l;
static int wire = -1;

static void need(int rc, const char *what)
{
	if (rc != CONDUIT_OK) {
		fprintf(stderr, "fuzz_lwip_frames: %s: %s\n", what,
		        conduit_status_name(rc));
		abort();
	}
}

static void setup(void)
{
	if (ctx != NULL)
		return;
	static const struct conduit_lwip_netif_config cfg = {
	    .ipv4 = "10.0.0.2/24", .ipv6 = "fd00::2"};
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) != 0)
		abort();
	need(conduit_lwip_stack(&st), "stack");
	need(conduit_lwip_netif_dgram(&nif, st, sv[0], &cfg), "netif");
	need(conduit_ctx_new(&ctx), "context");
	need(conduit_ctx_use_lwip(ctx, st), "use lwip");
	need(conduit_listen(&l, ctx, "tcp://10.0.0.2:7"),
	     conduit_ctx_error(ctx));
	wire = sv[1];
}

static void run_stack(void)
{
	size_t n = 0;
	conduit_poll(ctx, NULL, 0, 0, &n);
	conduit_flow *f = NULL;
	while (conduit_accept(&f, l) == CONDUIT_OK) {
		char buf[256];
		size_t got = 0;
		conduit_poll(ctx, NULL, 0, 0, &n);
		if (conduit_read(f, buf, sizeof(buf), &got) == CONDUIT_OK)
			conduit_write(f, buf, got, &n);
		conduit_poll(ctx, NULL, 0, 0, &n);
		conduit_flow_free(f);
		f = NULL;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	setup();
	while (size >= 2) {
		size_t len = (size_t)data[0] << 8 | data[1];
		data += 2;
		size -= 2;
		if (len > size)
			len = size;
		if (len > 0 && send(wire, data, len, 0) < 0)
			break;
		data += len;
		size -= len;
		run_stack();
	}
	/* What the stack sends back is drained so the pair never fills. */
	char sink[2048];
	while (recv(wire, sink, sizeof(sink), MSG_DONTWAIT) > 0)
		;
	return 0;
}
