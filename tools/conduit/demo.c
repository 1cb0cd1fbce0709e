/*
 * demo.c - `conduit demo`: every backend of this build end to end, in one
 * run, on loopback and the project's emulations, with nothing to install
 * and no server to start by hand.
 *
 * Each leg starts a server, connects to it through the resolver with a URI
 * (conduit_connect), and runs one exchange: a header, a few hundred 64-byte
 * round trips echoed by the server (their median is the latency), then N
 * bytes of a pattern that the server checks byte by byte and acknowledges
 * with the count it verified (throughput is measured up to that
 * acknowledgement, so it includes the checking).
 *
 * Legs on host sockets and on lwIP run client and server in this process,
 * in one conduit_poll() loop.  vchan legs run between two processes playing
 * two Xen domains over the emulation in stubs/xen: this program runs
 * itself again (/proc/self/exe, hidden mode --peer) with the emulation
 * first on the children's library path only, so the demo process keeps the
 * real Xen libraries and never loads the emulation.  Children get their
 * TLS material on standard input and report on standard output, one
 * "key value" line each.
 *
 * TLS legs use a CA and a server certificate made in memory at start (EC
 * P-256, mbedTLS's x509write), so clients verify a real chain and the
 * server's name.  Every wait is bounded; children are reaped and temporary
 * files removed on every path, also after SIGINT, SIGTERM or SIGHUP.
 * demo_int.h says which file does what.
 */
#include "demo.h"
#include "args.h"
#include "common.h"
#include "demo_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* The legs                                                            */

#ifdef CONDUIT_HAVE_UNIX
#define NEED_UNIX NULL
#else
#define NEED_UNIX "CONDUIT_WITH_UNIX=OFF"
#endif
#ifdef CONDUIT_HAVE_TCP
#define NEED_TCP NULL
#else
#define NEED_TCP "CONDUIT_WITH_TCP=OFF"
#endif
#ifdef CONDUIT_HAVE_TLS
#define NEED_TLS NULL
#else
#define NEED_TLS "CONDUIT_WITH_TLS=OFF"
#endif
#ifdef CONDUIT_HAVE_VCHAN
#define NEED_VCHAN NULL
#else
#define NEED_VCHAN "CONDUIT_WITH_VCHAN=OFF"
#endif
#ifdef CONDUIT_HAVE_LWIP
#define NEED_LWIP NULL
#else
#define NEED_LWIP "CONDUIT_WITH_LWIP=OFF"
#endif
/* The first of two requirements that is missing. */
#define NEED2(a, b) ((a) != NULL ? (a) : (b))

/* Rings large enough for bulk transfer (the default ones sit in the
 * control page: 1 KiB and 2 KiB). */
#define RINGS "read-ring=262144&write-ring=65536"

static const struct leg legs[] = {
    {"unix", "a Unix socket in a private directory", K_HOST, false, NEED_UNIX,
     NULL, NULL},
    {"tcp", "TCP on 127.0.0.1, a port the system picks", K_HOST, false,
     NEED_TCP, NULL, NULL},
    {"tls+tcp", "TLS over TCP, the certificate checked for 127.0.0.1", K_HOST,
     true, NEED2(NEED_TLS, NEED_TCP), NULL, NULL},
    {"tls+unix", "TLS over a Unix socket, checked for localhost", K_HOST, true,
     NEED2(NEED_TLS, NEED_UNIX), NULL, NULL},
    {"vchan", "Xen vchan between two emulated domains (2 processes)", K_VCHAN,
     false, NEED_VCHAN, "vchan://2/demo?" RINGS, "vchan://1/demo"},
    /* A vchan host names a domain, not a DNS name: TLS checks the
     * certificate against servername=. */
    {"tls+vchan", "TLS over vchan to the domain named \"logger\"", K_VCHAN,
     true, NEED2(NEED_TLS, NEED_VCHAN), "tls+vchan://logger/tls?" RINGS,
     "tls+vchan://logger/tls?servername=logger"},
    {"lwip", "TCP on lwIP over an in-memory Ethernet wire", K_LWIP, false,
     NEED_LWIP, NULL, NULL},
    {"tls+lwip", "TLS over TCP on lwIP", K_LWIP, true,
     NEED2(NEED_TLS, NEED_LWIP), NULL, NULL},
    {"rules", "a rules file sends https://logger.xen/ to TLS over vchan",
     K_VCHAN, true, NEED2(NEED_TLS, NEED_VCHAN),
     "tls+vchan://logger/https?" RINGS, "https://logger.xen/"},
};
#define NLEGS (sizeof(legs) / sizeof(legs[0]))

struct opts {
	bool want[NLEGS];
	bool any;
	uint64_t bytes;
};

volatile sig_atomic_t stop_sig;
char tmp_dir[PATH_MAX];

static void on_signal(int sig)
{
	stop_sig = sig;
}

void nap_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !stop_sig)
		;
}

__attribute__((format(printf, 3, 4))) void setf(char *buf, size_t len,
                                                const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

void one_line(char *s)
{
	for (; *s != '\0'; s++)
		if (*s == '\n' || *s == '\r' || *s == '\t')
			*s = ' ';
}

const struct leg *leg_named(const char *name)
{
	for (size_t i = 0; i < NLEGS; i++)
		if (strcmp(legs[i].name, name) == 0)
			return &legs[i];
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Output                                                              */

static bool colour;

#define C_RESET  "\033[0m"
#define C_BOLD   "\033[1m"
#define C_RED    "\033[1;31m"
#define C_GREEN  "\033[32m"
#define C_YELLOW "\033[33m"
#define C_DIM    "\033[2m"

static const char *co(const char *code)
{
	return colour ? code : "";
}

/* "  label     text", text wrapped at spaces to the terminal's 80
 * columns under its first column. */
static void field(const char *label, const char *text)
{
	printf("  %-*s", INDENT - 2, label);
	size_t col = INDENT;
	const char *s = text;
	bool first = true;
	while (*s != '\0') {
		while (*s == ' ')
			s++;
		size_t w = strcspn(s, " ");
		if (w == 0)
			break;
		if (!first && col + 1 + w > WIDTH) {
			printf("\n%*s", INDENT, "");
			col = INDENT;
			first = true;
		}
		if (!first) {
			putchar(' ');
			col++;
		}
		printf("%.*s", (int)w, s);
		col += w;
		s += w;
		first = false;
	}
	putchar('\n');
}

static void human_bytes(char *buf, size_t len, uint64_t b)
{
	if (b >= MIB)
		setf(buf, len, "%.2f MiB", (double)b / MIB);
	else if (b >= KIB)
		setf(buf, len, "%.1f KiB", (double)b / KIB);
	else
		setf(buf, len, "%llu B", (unsigned long long)b);
}

static void print_leg(const struct leg *lg, const struct result *res)
{
	char t[1500];
	if (res->out == O_NOT_BUILT) {
		setf(t, sizeof(t), "%snot built (%s)%s", co(C_YELLOW),
		     lg->missing, co(C_RESET));
		field("result", t);
		return;
	}
	if (res->uri[0] != '\0')
		field("uri", res->uri);
	if (res->explain[0] != '\0' || res->endpoint[0] != '\0') {
		setf(t, sizeof(t), "%s => %s", res->explain,
		     res->endpoint[0] ? res->endpoint : "?");
		field("resolved", t);
	}
	if (res->note[0] != '\0')
		field(res->note_label, res->note);
	if (res->tls[0] != '\0')
		field("tls", res->tls);
	if (res->out == O_PASS) {
		char h[32];
		human_bytes(h, sizeof(h), res->bytes);
		setf(t, sizeof(t),
		     "%llu bytes (%s) sent, every byte checked by the receiver",
		     (unsigned long long)res->bytes, h);
		field("verified", t);
		double mibs =
		    res->secs > 0 ? (double)res->bytes / MIB / res->secs : 0;
		setf(t, sizeof(t),
		     "%.1f MiB/s, up to the receiver's "
		     "acknowledgement",
		     mibs);
		field("speed", t);
		setf(t, sizeof(t),
		     "64 B round trip %.1f us (median of %d); connected in "
		     "%.2f ms",
		     res->rtt_us, res->rtt_n, res->setup_ms);
		field("latency", t);
		setf(t, sizeof(t), "%spass%s", co(C_GREEN), co(C_RESET));
		field("result", t);
	} else {
		setf(t, sizeof(t), "%sFAILED%s in %s: %s", co(C_RED),
		     co(C_RESET), res->phase, res->why);
		field("result", t);
	}
}

static void print_table(const bool *ran, const struct result *res,
                        double total_s)
{
	printf("\n%s%-10s %-9s %12s %9s %9s %9s%s\n", co(C_BOLD), "leg",
	       "result", "verified", "MiB/s", "RTT us", "setup ms",
	       co(C_RESET));
	int pass = 0, fail = 0, absent = 0;
	for (size_t i = 0; i < NLEGS; i++) {
		if (!ran[i])
			continue;
		const struct result *r = &res[i];
		printf("%-10s ", legs[i].name);
		if (r->out == O_PASS) {
			char h[32];
			human_bytes(h, sizeof(h), r->bytes);
			double mibs =
			    r->secs > 0 ? (double)r->bytes / MIB / r->secs : 0;
			printf("%s%-9s%s %12s %9.1f %9.1f %9.2f\n", co(C_GREEN),
			       "pass", co(C_RESET), h, mibs, r->rtt_us,
			       r->setup_ms);
			pass++;
		} else if (r->out == O_NOT_BUILT) {
			printf("%snot built (%s)%s\n", co(C_YELLOW),
			       legs[i].missing, co(C_RESET));
			absent++;
		} else {
			printf("%s%-9s%s %s\n", co(C_RED), "FAILED",
			       co(C_RESET), r->phase);
			fail++;
		}
	}
	printf("\n");
	if (fail == 0)
		printf("%s%d passed%s", co(C_GREEN), pass, co(C_RESET));
	else
		printf("%s%d FAILED%s, %d passed", co(C_RED), fail, co(C_RESET),
		       pass);
	if (absent > 0)
		printf(", %d not built", absent);
	printf(" in %.1f s\n", total_s);
	for (size_t i = 0; i < NLEGS; i++)
		if (ran[i] && res[i].out == O_FAIL) {
			char t[900];
			setf(t, sizeof(t), "%s: %s", res[i].phase, res[i].why);
			/* Reasons wrap like the legs' fields. */
			field(legs[i].name, t);
		}
}

/* ------------------------------------------------------------------ */
/* Options and the run                                                 */

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: conduit demo [--leg NAME]... [--bytes N]\n"
	    "\n"
	    "Shows every backend of this build working end to end, on\n"
	    "loopback and the project's emulations.  For each leg a server\n"
	    "is started and a client reaches it through the resolver; 300\n"
	    "round trips of 64 bytes give the latency, then N bytes of a\n"
	    "pattern are sent and checked byte by byte by the server.\n"
	    "\n"
	    "  --leg NAME   run this leg only (repeatable): unix, tcp,\n"
	    "               tls+tcp, tls+unix, vchan, tls+vchan, lwip,\n"
	    "               tls+lwip, rules\n"
	    "  --bytes N    bytes per leg (default 8M); K, M and G mean\n"
	    "               KiB, MiB and GiB; 1 to 4G\n"
	    "  --help       this text\n"
	    "\n"
	    "Exit status: 0 when every leg built passed (a leg whose backend\n"
	    "is not built is listed, not failed), 1 when one failed, 2 for a\n"
	    "usage error.  Colour only on a terminal, and never with\n"
	    "NO_COLOR set.\n");
}

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt,
                                                             ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "conduit demo: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n(conduit demo --help lists the options)\n");
	va_end(ap);
	return 2;
}

static int parse_bytes(const char *s, uint64_t *out)
{
	if (s[0] < '0' || s[0] > '9')
		return -1;
	char *end = NULL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0)
		return -1;
	uint64_t mul = 1;
	if (*end != '\0') {
		char u = (char)(*end | 0x20);
		mul = u == 'k'   ? KIB
		      : u == 'm' ? MIB
		      : u == 'g' ? 1024 * MIB
		                 : 0;
		end++;
		if (mul == 0 ||
		    (*end != '\0' && strcmp(end, "iB") != 0 &&
		     strcmp(end, "ib") != 0 && strcmp(end, "B") != 0 &&
		     strcmp(end, "b") != 0))
			return -1;
	}
	if (v == 0 || v > MAX_BYTES / mul)
		return -1;
	*out = v * mul;
	return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	enum { O_HELP = 'h', O_LEG = 256, O_BYTES };
	static const struct option longs[] = {
	    {"help", no_argument, NULL, O_HELP},
	    {"leg", required_argument, NULL, O_LEG},
	    {"bytes", required_argument, NULL, O_BYTES},
	    {NULL, 0, NULL, 0},
	};
	memset(o, 0, sizeof(*o));
	o->bytes = DEFAULT_BYTES;
	struct tool_args a;
	tool_args_init(&a, argc, argv, "h", longs);
	a.dashdash_operand = true; /* no operands: refused */
	for (;;) {
		const char *val = NULL;
		int c = tool_getopt(&a, &val);
		if (c == TOOL_ARGS_END)
			return -1;
		if (c == O_HELP) {
			usage(stdout);
			return 0;
		}
		if (c == TOOL_ARGS_OPERAND || c == TOOL_ARGS_UNKNOWN)
			return usage_error("unknown option '%s'", val);
		if (val == NULL)
			return usage_error("%s needs a value",
			                   c == O_LEG ? "--leg" : "--bytes");
		if (c == O_BYTES) {
			if (parse_bytes(val, &o->bytes) < 0)
				return usage_error(
				    "--bytes: '%s' is not a byte count from 1 "
				    "to 4G (e.g. 65536, 512K, 8M)",
				    val);
			continue;
		}
		const struct leg *lg = leg_named(val);
		if (lg == NULL) {
			fprintf(
			    stderr,
			    "conduit demo: --leg: unknown leg '%s'; the legs "
			    "are:",
			    val);
			for (size_t k = 0; k < NLEGS; k++)
				fprintf(stderr, " %s", legs[k].name);
			fprintf(stderr, "\n");
			return 2;
		}
		o->want[lg - legs] = true;
		o->any = true;
	}
}

static void run_leg(size_t i, struct result *res, uint64_t bytes)
{
	const struct leg *lg = &legs[i];
	memset(res, 0, sizeof(*res));
	if (lg->missing != NULL) {
		res->out = O_NOT_BUILT;
		return;
	}
	if (lg->tls && !creds.made) {
		res->out = O_FAIL;
		setf(res->phase, sizeof(res->phase), "setup");
		setf(res->why, sizeof(res->why),
		     "no demo certificates (see the first leg's message)");
		return;
	}
	switch (lg->kind) {
	case K_HOST:
		host_leg(res, lg, bytes);
		break;
	case K_LWIP:
		lwip_leg(res, lg, bytes);
		break;
	case K_VCHAN:
		vchan_leg(res, lg, bytes);
		break;
	}
}

int conduit_demo(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "--peer") == 0) {
		signal(SIGPIPE, SIG_IGN);
		return peer_main(argc, argv);
	}
	struct opts o;
	int prc = parse_opts(argc, argv, &o);
	if (prc >= 0)
		return prc;
	const char *nc = getenv("NO_COLOR");
	colour = isatty(1) && (nc == NULL || nc[0] == '\0');

	/* A child that dies while we write to it must not kill us. */
	tool_catch_signals(on_signal, 1);

	const char *tmp = getenv("TMPDIR");
	if (tmp == NULL || tmp[0] == '\0')
		tmp = P_tmpdir; /* the system default */
	setf(tmp_dir, sizeof(tmp_dir), "%s/conduit-demo-XXXXXX", tmp);
	if (mkdtemp(tmp_dir) == NULL) {
		fprintf(stderr,
		        "conduit demo: cannot make a directory in %s: %s\n",
		        tmp, strerror(errno));
		return 1;
	}

	uint64_t t0 = tool_now_ms();
	size_t nrun = 0;
	bool ran[NLEGS] = {false};
	for (size_t i = 0; i < NLEGS; i++)
		if (!o.any || o.want[i])
			nrun++;
	char hb[32];
	human_bytes(hb, sizeof(hb), o.bytes);
	printf("%sconduit demo%s: %zu leg%s, %s each, on loopback and "
	       "emulations\n",
	       co(C_BOLD), co(C_RESET), nrun, nrun == 1 ? "" : "s", hb);

	char cred_why[200] = "";
#ifdef CONDUIT_HAVE_TLS
	bool need_tls = false;
	for (size_t i = 0; i < NLEGS; i++)
		if ((!o.any || o.want[i]) && legs[i].tls &&
		    legs[i].missing == NULL)
			need_tls = true;
	if (need_tls) {
		uint64_t c0 = tool_now_ms();
		if (make_creds(&creds, cred_why, sizeof(cred_why)) == 0)
			printf("%sa throwaway CA and server certificate (EC "
			       "P-256) "
			       "made in %llu ms%s\n",
			       co(C_DIM),
			       (unsigned long long)(tool_now_ms() - c0),
			       co(C_RESET));
		else
			printf("%scannot make the demo certificates: %s%s\n",
			       co(C_RED), cred_why, co(C_RESET));
	}
#endif
	static struct result res[NLEGS];
	size_t k = 0;
	for (size_t i = 0; i < NLEGS && !stop_sig; i++) {
		if (o.any && !o.want[i])
			continue;
		printf("\n%s[%zu/%zu] %s%s: %s\n", co(C_BOLD), ++k, nrun,
		       legs[i].name, co(C_RESET), legs[i].title);
		fflush(stdout);
		run_leg(i, &res[i], o.bytes);
		if (res[i].out == O_FAIL && legs[i].tls && !creds.made &&
		    cred_why[0] != '\0')
			setf(res[i].why, sizeof(res[i].why),
			     "no demo certificates: %s", cred_why);
		ran[i] = true;
		print_leg(&legs[i], &res[i]);
		fflush(stdout);
	}
#ifdef CONDUIT_HAVE_LWIP
	lwip_down();
#endif
	tool_rmtree(tmp_dir);
	print_table(ran, res, (double)(tool_now_ms() - t0) / 1000.0);
	fflush(stdout);
	if (stop_sig) {
		fprintf(stderr, "conduit demo: interrupted\n");
		signal((int)stop_sig, SIG_DFL);
		raise((int)stop_sig);
		return 1;
	}
	for (size_t i = 0; i < NLEGS; i++)
		if (ran[i] && res[i].out == O_FAIL)
			return 1;
	return 0;
}
