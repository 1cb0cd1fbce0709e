/*
 * conduit.c - the `conduit` command: the library seen from a shell, in the
 * manner of socat and ncat, and the way the tests drive it from outside.
 *
 *   conduit cat URI                 connect; stdin -> flow, flow -> stdout
 *   conduit listen [--keep] [--echo] URI
 *                                   accept, then bridge to stdin/stdout or
 *                                   echo
 *   conduit relay LISTEN TARGET     accept on LISTEN, connect each to TARGET
 *   conduit resolve URI             the endpoint and the addresses found
 *
 * Options set up the context before any of these runs: TLS (--ca, --cert,
 * --key, --client-auth, --alpn, --insecure: the context's TLS settings)
 * and lwIP (--lwip-tap, --lwip-dgram: the context's TCP on an lwIP stack
 * over a TAP device or a datagram wire to another conduit process).
 *
 * Everything runs in one event loop, whatever the subcommand: a "session"
 * is one accepted or connected flow plus its partner (standard input and
 * output, a second flow for the relay, or nothing for an echo), joined by
 * one or two "directions", each a bounded buffer from a source to a sink.
 * A direction stops reading while its buffer is full, so a slow sink slows
 * its source instead of growing memory (backpressure), and when its source
 * ends it passes the end on as a half-close once the buffer has drained.
 * A session is over when every direction has ended.
 *
 * The loop uses the event-loop integration API (conduit_wait_fds(),
 * poll(2), conduit_process()) rather than conduit_poll(), because it must
 * also wait on descriptors that are not flows: standard input and output,
 * and a self-pipe that turns SIGINT/SIGTERM/SIGHUP into a clean exit (the
 * listener's socket file removed, stdin/stdout flags restored).  Each
 * session asks conduit_wait_fds() separately, so after poll(2) only the
 * sessions whose descriptors fired, or whose deadline came, are run: a relay
 * with many idle connections costs nothing per wake-up for the idle ones.
 *
 * Only the public API (conduit/conduit.h) is used.
 */
#include <conduit/conduit.h>
#ifdef CONDUIT_HAVE_LWIP
#include <conduit/lwip.h>
#endif
#ifdef CONDUIT_HAVE_TLS
#include <conduit/tls.h>
#endif

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "demo.h"

/* Exit statuses, documented in the help text and the README. */
enum {
	EXIT_IO = 1,      /* I/O failure after connecting */
	EXIT_USAGE = 2,   /* bad command line */
	EXIT_RESOLVE = 3, /* bad URI, unknown scheme, name lookup */
	EXIT_CONNECT = 4, /* refused, no such socket, timed out, ... */
};

/* Bytes held per direction; a full buffer stops reading its source. */
#define DIR_CAP (64 * 1024)
/* Reads per direction per wake-up, so one busy connection cannot starve
 * the others (poll(2) is level-triggered: the rest is seen next turn). */
#define DIR_ROUNDS 8
/* Relay and echo sessions at most, whatever the descriptor limit says. */
#define MAX_SESSIONS 4096

/* ------------------------------------------------------------------ */
/* Command line                                                        */

enum cmd { CMD_NONE, CMD_CAT, CMD_LISTEN, CMD_RELAY, CMD_RESOLVE };

struct opts {
	enum cmd cmd;
	const char *args[2];
	int nargs;
	int timeout_ms; /* 0: no limit */
	bool verbose, keep, echo, help, explain;
	const char *rules;      /* --rules FILE */
	const char *lwip_tap;   /* --lwip-tap NAME,ADDR/PREFIX[,GW] */
	const char *lwip_dgram; /* --lwip-dgram PATH,ADDR/PREFIX[,GW] */
	/* TLS: files, the variable holding the key's password, ALPN list */
	const char *ca, *cert, *key, *pass_env, *alpn;
	const char *servername; /* --servername: the name TLS checks */
	int client_auth;        /* CONDUIT_TLS_VERIFY_*, or -1: not given */
	bool insecure;
};

static const char *cmd_names[] = {"", "cat", "listen", "relay", "resolve"};

static const char usage_main[] =
    "usage: conduit [-v] [--timeout MS] [--rules FILE] [TLS options]\n"
    "               [--lwip-tap SPEC | --lwip-dgram SPEC] COMMAND [ARGS]\n"
    "\n"
    "Commands:\n"
    "  cat URI                  connect to URI; copy standard input to it and\n"
    "                           what it sends to standard output\n"
    "  listen [--keep] [--echo] URI\n"
    "                           accept a connection on URI and bridge it to\n"
    "                           standard input and output (or echo it)\n"
    "  relay LISTEN_URI TARGET_URI\n"
    "                           for each connection accepted on LISTEN_URI,\n"
    "                           connect to TARGET_URI and copy both ways\n"
    "  resolve [--explain] URI  print the endpoint URI and the addresses "
    "found\n"
    "                           (--explain: each step that produced them)\n"
    "  demo [--leg NAME] [--bytes N]\n"
    "                           every backend of this build end to end, on\n"
    "                           loopback and emulations ('conduit demo "
    "--help')\n"
    "\n"
    "Options (before or after the command):\n"
    "  --timeout MS   give up connecting after MS milliseconds, and end a\n"
    "                 connection on which no byte has moved for MS ms\n"
    "  --rules FILE   load resolver rules from FILE (see README); without\n"
    "                 it, the file named by $CONDUIT_RULES if set\n"
    "  -v, --verbose  log each phase (resolving, connecting, accepted, ...)\n"
    "                 on standard error, one line each; after a TLS\n"
    "                 handshake: version, suite, ALPN and the peer's\n"
    "                 certificate subject\n"
    "  -h, --help     this text; 'conduit COMMAND --help' for a command\n"
    "\n"
    "TLS (tls://HOST:PORT = tls+tcp://, tls+unix://, tls+vchan://, https://\n"
    "and other service schemes whose entry says tls):\n"
    "  --ca FILE|DIR  trust these CA certificates instead of the system's\n"
    "                 (clients: the server's chain; listen and relay with\n"
    "                 --client-auth: the clients' certificates)\n"
    "  --cert FILE    certificate chain, leaf first: the server's for listen\n"
    "                 and relay's listener, the client's (mutual TLS) for\n"
    "                 cat and relay's target\n"
    "  --key FILE     its private key (default: in the --cert file)\n"
    "  --key-password-env VAR\n"
    "                 the password of an encrypted key is in variable VAR\n"
    "  --client-auth none|optional|required\n"
    "                 listen, relay: ask clients for a certificate (default\n"
    "                 none); required refuses clients without a valid one\n"
    "  --alpn P1[,P2...]\n"
    "                 ALPN protocols, most preferred first\n"
    "  --servername NAME\n"
    "                 cat, relay's target: check the server's certificate\n"
    "                 for NAME (and send it as SNI) instead of the URI's host\n"
    "  --insecure     INSECURE: do not check server certificates (the\n"
    "                 connection is encrypted but not authenticated)\n"
    "  URI options ?ca=, cert=, key=, alpn=, servername=, "
    "insecure-no-verify=1\n"
    "  set the same for one URI.  A server's certificate must name the\n"
    "  URI's host (or servername=).  Bad files or keys: exit 2; a failed\n"
    "  verification or handshake: exit 4, with the reason.\n"
    "\n"
    "Xen vchan (vchan://DOMID/PORT, vchan://NAME/PORT): 'listen' names the\n"
    "peer domain it serves (or a name it registers), 'cat' the server's.\n"
    "Without a hypervisor, run each side over the emulation built in\n"
    "stubs/xen: LD_LIBRARY_PATH=<build>/stubs/xen, CONDUIT_XEN_DIR=<a\n"
    "directory shared by both>, CONDUIT_XEN_DOMID=<this side's domain>.\n"
    "\n"
    "TCP on lwIP instead of the kernel (tcp://, tls://, ... go through it):\n"
    "  --lwip-tap NAME,ADDR/PREFIX[,GW]\n"
    "                 lwIP on the TAP device NAME (made if needed; bring the\n"
    "                 kernel side up yourself) with this IPv4 address\n"
    "  --lwip-dgram PATH,ADDR/PREFIX[,GW]\n"
    "                 lwIP on a datagram wire to another conduit process:\n"
    "                 the first process to name PATH makes the wire there\n"
    "                 and goes on; the second joins it (PATH is then\n"
    "                 removed).  Give each side its own address on one\n"
    "                 subnet.  Bad specifications: exit 2.\n"
    "\n"
    "Exit status:\n"
    "  0  success\n"
    "  1  I/O failure after connecting (reset, idle timeout, ...)\n"
    "  2  usage error, or a rules file that cannot be loaded\n"
    "  3  resolution failure (malformed URI, unknown scheme, bad host,\n"
    "     port or option, name lookup, path too long, no backend)\n"
    "  4  connection failure (refused, no such socket, timed out,\n"
    "     unreachable, permission denied, address in use)\n";

static const char usage_cat[] =
    "usage: conduit cat [--timeout MS] [-v] [TLS options] URI\n"
    "\n"
    "Connect to URI.  Copy standard input to the connection and what the\n"
    "peer sends to standard output.  When standard input ends, the\n"
    "connection is half-closed (the peer sees end of stream and may still\n"
    "answer).  Exits 0 once both directions have ended: standard input\n"
    "finished and sent, and the peer's end of stream reached and written.\n"
    "--timeout MS limits the connect (and a TLS handshake) and ends a\n"
    "connection idle that long (exit 1).  TLS: --ca verifies the server,\n"
    "--cert/--key present a client certificate, --alpn, --insecure; see\n"
    "'conduit --help'.  Exit statuses: see 'conduit --help'.\n";

static const char usage_listen[] =
    "usage: conduit listen [--keep] [--echo] [--timeout MS] [-v]\n"
    "                      [--cert FILE --key FILE] [--client-auth MODE] URI\n"
    "\n"
    "Listen on URI and print 'listening on URI' on standard error, with the\n"
    "real address (the port the system chose for tcp://127.0.0.1:0).\n"
    "Accept one connection, stop listening, and bridge the connection to\n"
    "standard input and output as 'conduit cat' does.\n"
    "  --keep   go on accepting.  Connections are bridged one after another;\n"
    "           standard input feeds whichever connection is being served, so\n"
    "           once it has ended later connections get an immediate end of\n"
    "           stream, and what each one sends is written to standard\n"
    "           output in turn.  A connection that fails is logged and the\n"
    "           next one served.  Runs until interrupted.\n"
    "  --echo   send each connection's bytes back to it instead of using\n"
    "           standard input and output; with --keep, connections are\n"
    "           echoed concurrently.\n"
    "--timeout MS ends a connection on which no byte has moved for MS ms.\n"
    "TLS: 'listen tls://127.0.0.1:8443 --cert c.pem --key k.pem' serves\n"
    "TLS (a certificate is required); --client-auth optional|required\n"
    "asks clients for theirs, checked against --ca; --alpn.  A client whose\n"
    "handshake fails ends a single 'listen' with exit 4; with --keep it is\n"
    "logged and the next one served.\n";

static const char usage_relay[] =
    "usage: conduit relay [--timeout MS] [-v] [TLS options] LISTEN_URI "
    "TARGET_URI\n"
    "\n"
    "Listen on LISTEN_URI (printing 'listening on URI' on standard error).\n"
    "For each connection accepted, connect to TARGET_URI and copy bytes both\n"
    "ways, many connections at once.  End of stream from either side is\n"
    "passed on as a half-close; a pair is finished when both directions have\n"
    "ended.  A connection to the target that fails closes the accepted one\n"
    "and is logged on one line; the relay goes on.  TARGET_URI is resolved\n"
    "once, at start.  --timeout MS limits each connect to the target and\n"
    "ends a pair idle that long.  Runs until interrupted.  TLS options\n"
    "serve both sides: --cert/--key is the listener's certificate and the\n"
    "one presented to a TLS target that asks; --ca verifies the target\n"
    "(and clients, with --client-auth).\n";

static const char usage_resolve[] =
    "usage: conduit resolve [--explain] [--rules FILE] [-v] URI\n"
    "\n"
    "Resolve URI as a connect would (a host name is looked up) and print the\n"
    "canonical endpoint URI, then one line '  address ADDR' per address\n"
    "found.  With --explain, first one line per step: which service, rule\n"
    "and lookup produced which part.  Exits 3 when the URI cannot be\n"
    "resolved.\n";

static const char *usage_for(enum cmd c)
{
	switch (c) {
	case CMD_CAT:
		return usage_cat;
	case CMD_LISTEN:
		return usage_listen;
	case CMD_RELAY:
		return usage_relay;
	case CMD_RESOLVE:
		return usage_resolve;
	default:
		return usage_main;
	}
}

static int usage_error(enum cmd c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A usage error: what was wrong, the command's synopsis, exit 2. */
static int usage_error(enum cmd c, const char *fmt, ...)
{
	char what[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	fprintf(stderr, "conduit: %s\n", what);
	/* Only the synopsis line: the full text is one --help away. */
	const char *u = usage_for(c);
	fwrite(u, 1, strcspn(u, "\n") + 1, stderr);
	fprintf(stderr, "Try 'conduit %s%s--help'.\n", cmd_names[c],
	        c == CMD_NONE ? "" : " ");
	return EXIT_USAGE;
}

static bool parse_ms(const char *s, int *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < 1 || v > INT_MAX ||
	    s[0] == '-' || s[0] == '+' || s[0] == ' ')
		return false;
	*out = (int)v;
	return true;
}

/*
 * A valued option, `--name VALUE` or `--name=VALUE`: true when argv[*i] is
 * this option (then *i has moved past a separate value), with *v the value
 * or NULL when it is missing.
 */
static bool opt_is(int argc, char **argv, int *i, const char *name,
                   const char **v)
{
	const char *a = argv[*i];
	size_t n = strlen(name);
	if (strncmp(a, name, n) != 0 || (a[n] != '\0' && a[n] != '='))
		return false;
	if (a[n] == '=')
		*v = a + n + 1;
	else
		*v = *i + 1 < argc ? argv[++*i] : NULL;
	return true;
}

/* The ALPN list as the TLS layer takes it: 1 to 16 names of 1 to 255
 * bytes, separated by commas. */
#define ALPN_MAX 16
/* A name TLS can check: 1-253 bytes of letters, digits, '.', '-', and
 * ':' for IPv6 literals (no brackets). */
static bool servername_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!isalnum(c) && c != '.' && c != '-' && c != ':')
			return false;
	}
	return true;
}

static bool alpn_ok(const char *list)
{
	size_t n = 0;
	for (const char *p = list;; n++) {
		size_t len = strcspn(p, ",");
		if (len == 0 || len > 255 || n == ALPN_MAX)
			return false;
		if (p[len] == '\0')
			return true;
		p += len + 1;
	}
}

/* An option naming a file: -1 when it has one, else the exit status. */
static int file_opt(const struct opts *o, const char *name, const char *v,
                    const char **dst)
{
	if (v == NULL || *v == '\0')
		return usage_error(o->cmd, "%s needs a file", name);
	*dst = v;
	return -1;
}

/* Options may come before or after the command (`conduit -v cat URI`,
 * `conduit cat URI -v`); "--" ends them.  Returns -1 on success, else an
 * exit status. */
static int parse_args(int argc, char **argv, struct opts *o)
{
	bool only_args = false;
	const char *keep_opt = NULL;
	o->client_auth = -1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = NULL;
		int st;
		if (!only_args && a[0] == '-' && a[1] != '\0') {
			if (strcmp(a, "--") == 0) {
				only_args = true;
			} else if (strcmp(a, "-h") == 0 ||
			           strcmp(a, "--help") == 0) {
				o->help = true;
			} else if (strcmp(a, "-v") == 0 ||
			           strcmp(a, "--verbose") == 0) {
				o->verbose = true;
			} else if (strcmp(a, "--explain") == 0) {
				o->explain = true;
			} else if (opt_is(argc, argv, &i, "--rules", &v)) {
				if (v == NULL || *v == '\0')
					return usage_error(
					    o->cmd, "--rules needs a file");
				o->rules = v;
			} else if (opt_is(argc, argv, &i, "--lwip-tap", &v)) {
				if (v == NULL)
					return usage_error(
					    o->cmd, "--lwip-tap needs "
					            "NAME,ADDR/PREFIX[,GW]");
				o->lwip_tap = v;
			} else if (opt_is(argc, argv, &i, "--lwip-dgram", &v)) {
				if (v == NULL)
					return usage_error(
					    o->cmd, "--lwip-dgram needs "
					            "PATH,ADDR/PREFIX[,GW]");
				o->lwip_dgram = v;
			} else if (opt_is(argc, argv, &i, "--ca", &v)) {
				if ((st = file_opt(o, "--ca", v, &o->ca)) >= 0)
					return st;
			} else if (opt_is(argc, argv, &i, "--cert", &v)) {
				if ((st = file_opt(o, "--cert", v, &o->cert)) >=
				    0)
					return st;
			} else if (opt_is(argc, argv, &i, "--key", &v)) {
				if ((st = file_opt(o, "--key", v, &o->key)) >=
				    0)
					return st;
			} else if (opt_is(argc, argv, &i, "--key-password-env",
			                  &v)) {
				if (v == NULL || *v == '\0')
					return usage_error(
					    o->cmd,
					    "--key-password-env needs "
					    "the name of an environment "
					    "variable");
				o->pass_env = v;
			} else if (opt_is(argc, argv, &i, "--client-auth",
			                  &v)) {
				static const char *const modes[] = {
				    "none", "optional", "required"};
				o->client_auth = -1;
				for (int m = 0; m < 3 && v != NULL; m++)
					if (strcmp(v, modes[m]) == 0)
						o->client_auth = m;
				if (o->client_auth < 0)
					return usage_error(
					    o->cmd,
					    "--client-auth: '%s' is not "
					    "none, optional or required",
					    v != NULL ? v : "");
			} else if (opt_is(argc, argv, &i, "--alpn", &v)) {
				if (v == NULL || !alpn_ok(v))
					return usage_error(
					    o->cmd,
					    "--alpn: '%s' is not a list "
					    "of 1 to %d protocol names "
					    "(1 to 255 bytes each) "
					    "separated by commas",
					    v != NULL ? v : "", ALPN_MAX);
				o->alpn = v;
			} else if (opt_is(argc, argv, &i, "--servername", &v)) {
				if (v == NULL || !servername_ok(v))
					return usage_error(
					    o->cmd,
					    "--servername: '%s' is not a "
					    "host name or IP address",
					    v != NULL ? v : "");
				o->servername = v;
			} else if (strcmp(a, "--insecure") == 0) {
				o->insecure = true;
			} else if (strcmp(a, "--keep") == 0) {
				o->keep = true;
				keep_opt = a;
			} else if (strcmp(a, "--echo") == 0) {
				o->echo = true;
				keep_opt = a;
			} else if (opt_is(argc, argv, &i, "--timeout", &v)) {
				if (v == NULL)
					return usage_error(
					    o->cmd, "--timeout needs a value");
				if (!parse_ms(v, &o->timeout_ms))
					return usage_error(
					    o->cmd,
					    "--timeout: '%s' is not a "
					    "positive number of "
					    "milliseconds",
					    v);
			} else {
				return usage_error(o->cmd,
				                   "unknown option '%s'", a);
			}
			continue;
		}
		if (o->cmd == CMD_NONE) {
			for (int c = CMD_CAT; c <= CMD_RESOLVE; c++)
				if (strcmp(a, cmd_names[c]) == 0)
					o->cmd = (enum cmd)c;
			if (o->cmd == CMD_NONE) {
				if (o->help)
					break; /* `conduit --help bogus`: help
					        */
				return usage_error(CMD_NONE,
				                   "unknown command '%s'", a);
			}
			continue;
		}
		if (o->nargs == 2)
			return usage_error(o->cmd, "unexpected argument '%s'",
			                   a);
		o->args[o->nargs++] = a;
	}
	if (o->help)
		return -1;
	if (o->cmd == CMD_NONE)
		return usage_error(CMD_NONE, "no command given");
	if (keep_opt != NULL && o->cmd != CMD_LISTEN)
		return usage_error(o->cmd, "%s is an option of 'listen' only",
		                   keep_opt);
	if (o->explain && o->cmd != CMD_RESOLVE)
		return usage_error(o->cmd, "--explain goes with resolve");
	if (o->key != NULL && o->cert == NULL)
		return usage_error(o->cmd,
		                   "--key %s needs --cert (the "
		                   "certificate the key belongs to)",
		                   o->key);
	if (o->client_auth >= 0 && o->cmd != CMD_LISTEN && o->cmd != CMD_RELAY)
		return usage_error(o->cmd, "--client-auth is an option of "
		                           "'listen' and 'relay' only");
	if (o->lwip_tap != NULL && o->lwip_dgram != NULL)
		return usage_error(o->cmd, "--lwip-tap and --lwip-dgram: give "
		                           "one of them");
	int want = o->cmd == CMD_RELAY ? 2 : 1;
	if (o->nargs < want)
		return usage_error(o->cmd, "missing %s",
		                   o->cmd == CMD_RELAY
		                       ? (o->nargs == 0
		                              ? "LISTEN_URI and TARGET_URI"
		                              : "TARGET_URI")
		                       : "URI");
	if (o->nargs > want)
		return usage_error(o->cmd, "unexpected argument '%s'",
		                   o->args[want]);
	return -1;
}

/* ------------------------------------------------------------------ */
/* Statuses, messages, clocks                                          */

/* A failure before any byte could move: was it the URI's resolution or
 * the connection itself? */
static int setup_exit(int rc)
{
	switch (rc) {
	case CONDUIT_ERR_URI:
	case CONDUIT_ERR_SCHEME:
	case CONDUIT_ERR_HOST:
	case CONDUIT_ERR_PORT:
	case CONDUIT_ERR_OPTION:
	case CONDUIT_ERR_RESOLVE:
	case CONDUIT_ERR_PATH_TOO_LONG:
	case CONDUIT_ERR_NO_BACKEND:
		return EXIT_RESOLVE;
	default:
		return EXIT_CONNECT;
	}
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One line on stderr, written at once so concurrent lines do not mix. */
static void say(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n = snprintf(line, sizeof(line), "conduit: ");
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	strcat(line, "\n");
	fputs(line, stderr);
}

/* After a TLS handshake: whom the peer's certificate names, if anyone. */
static void tls_peer(conduit_flow *f, char *buf, size_t len)
{
	buf[0] = '\0';
#ifdef CONDUIT_HAVE_TLS
	char subj[256];
	int rc = conduit_tls_peer_subject(f, subj, sizeof(subj));
	if (rc == CONDUIT_OK)
		snprintf(buf, len, " peer \"%s\"", subj);
	else if (rc == CONDUIT_ERR_NOT_FOUND)
		snprintf(buf, len, " no peer certificate");
	else if (rc == CONDUIT_ERR_CERT)
		snprintf(buf, len, " peer certificate NOT verified");
#else
	(void)f;
	(void)len;
#endif
}

static void observe(void *arg, const struct conduit_event *ev)
{
	(void)arg;
	char st[96] = "", peer[300] = "";
	if (ev->status != CONDUIT_OK)
		snprintf(st, sizeof(st), " [%s]",
		         conduit_status_name(ev->status));
	else if (ev->phase == CONDUIT_PHASE_TLS_HANDSHAKED && ev->flow != NULL)
		tls_peer(ev->flow, peer, sizeof(peer));
	say("%s %s%s%s%s%s%s", conduit_phase_name(ev->phase), ev->uri,
	    ev->detail[0] != '\0' ? " (" : "", ev->detail,
	    ev->detail[0] != '\0' ? ")" : "", peer, st);
}

/* ------------------------------------------------------------------ */
/* Standard input and output                                           */

/*
 * Standard input and output are made non-blocking while the command runs,
 * so that a full pipe or a slow terminal stalls only its own direction.
 * O_NONBLOCK belongs to the open file description, which the shell may
 * share, so the original flags are put back on every way out: normal exit
 * and the signals the loop turns into an exit.
 */
static int saved_flags[2] = {-1, -1};

static void stdio_restore(void)
{
	for (int fd = 1; fd >= 0; fd--)
		if (saved_flags[fd] >= 0) {
			fcntl(fd, F_SETFL, saved_flags[fd]);
			saved_flags[fd] = -1;
		}
}

/* Returns false when fd is not open at all. */
static bool stdio_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return false;
	if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0)
		saved_flags[fd] = fl;
	return true;
}

/* The self-pipe: a signal handler writes the signal number, the loop
 * polls the read end. */
static int sig_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
	int e = errno;
	unsigned char b = (unsigned char)sig;
	if (write(sig_pipe[1], &b, 1) < 0) {
		/* Full pipe: a signal is already pending; nothing to do. */
	}
	errno = e;
}

static int signals_setup(void)
{
	if (pipe(sig_pipe) < 0)
		return -1;
	for (int i = 0; i < 2; i++) {
		fcntl(sig_pipe[i], F_SETFD, FD_CLOEXEC);
		fcntl(sig_pipe[i], F_SETFL, O_NONBLOCK);
	}
	/* A closed stdout must be an EPIPE we report, not a silent death. */
	tool_catch_signals(on_signal, 1);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Sessions                                                            */

/* One side of a session: a flow, or standard input and output. */
struct end {
	conduit_flow *flow; /* NULL: standard input and output */
	bool up;            /* established; data may move */
};

/* Bytes from src to dst through a bounded buffer. */
struct dir {
	struct end *src, *dst;
	uint8_t *buf;
	size_t off, len; /* unsent bytes are buf[off..len) */
	bool eof;        /* src has ended */
	bool done;       /* ...and dst was given everything and the end */
};

struct session {
	struct end end[2];
	size_t nend;
	struct dir dir[2];
	size_t ndir;
	uint64_t idle_at;        /* end the session then (UINT64_MAX: never) */
	uint64_t wake_at;        /* the library wants to be called by then */
	size_t span_lo, span_hi; /* its descriptors in the poll array */
	bool ready;
	/* The failure, if any: status, message, and whether it happened
	 * while connecting (exit 3/4) or after (exit 1). */
	int rc;
	bool in_setup;
	char msg[512];
};

enum mode { MODE_CAT, MODE_STDIO, MODE_ECHO, MODE_RELAY };

struct prog {
	conduit_ctx *ctx;
	const struct opts *o;
	enum mode mode;
	conduit_listener *l;
	conduit_endpoint *target; /* relay: resolved once */
	struct session **s;
	size_t ns, scap, max_sessions;
	bool stdin_eof; /* outlives sessions (listen --keep) */
	bool single;    /* one session, then exit with its status */
	bool accepted;
	struct pollfd *fds;
	size_t nfds, fdcap;
};

static bool dir_reads_stdin(const struct dir *d)
{
	return d->src->flow == NULL;
}

static int session_fail(struct session *s, int rc, bool in_setup,
                        const char *msg)
{
	if (s->rc == CONDUIT_OK) {
		s->rc = rc;
		s->in_setup = in_setup;
		snprintf(s->msg, sizeof(s->msg), "%s", msg);
	}
	return rc;
}

static int stdio_fail(struct session *s, const char *what, int err)
{
	char m[256];
	snprintf(m, sizeof(m), "%s: %s", what, strerror(err));
	return session_fail(
	    s, err == EPIPE ? CONDUIT_ERR_CLOSED : CONDUIT_ERR_SYSTEM, false,
	    m);
}

/* Read from an end: the conduit statuses, for stdin too. */
static int end_read(struct session *s, struct end *e, void *buf, size_t len,
                    size_t *n)
{
	*n = 0;
	if (e->flow != NULL) {
		int rc = conduit_read(e->flow, buf, len, n);
		if (rc >= CONDUIT_ERR_INVALID)
			session_fail(s, rc, false, conduit_flow_error(e->flow));
		return rc;
	}
	for (;;) {
		ssize_t r = read(STDIN_FILENO, buf, len);
		if (r > 0) {
			*n = (size_t)r;
			return CONDUIT_OK;
		}
		if (r == 0)
			return CONDUIT_EOF;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return CONDUIT_WANT_READ;
		return stdio_fail(s, "read standard input", errno);
	}
}

static int end_write(struct session *s, struct end *e, const void *buf,
                     size_t len, size_t *n)
{
	*n = 0;
	if (e->flow != NULL) {
		int rc = conduit_write(e->flow, buf, len, n);
		if (rc >= CONDUIT_ERR_INVALID)
			session_fail(s, rc, false, conduit_flow_error(e->flow));
		return rc;
	}
	for (;;) {
		ssize_t r = write(STDOUT_FILENO, buf, len);
		if (r >= 0) {
			*n = (size_t)r;
			return CONDUIT_OK;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return CONDUIT_WANT_WRITE;
		return stdio_fail(s, "write standard output", errno);
	}
}

/* Pass the end of stream on.  Standard output stays open: in
 * `listen --keep` the next connection writes to it too, and it closes
 * when the command exits. */
static int end_shut(struct session *s, struct end *e)
{
	if (e->flow == NULL)
		return CONDUIT_OK;
	int rc = conduit_shutdown(e->flow, CONDUIT_SHUT_WR);
	if (rc != CONDUIT_OK)
		session_fail(s, rc, false, conduit_flow_error(e->flow));
	return rc;
}

static bool is_want(int rc)
{
	return rc == CONDUIT_WANT_READ || rc == CONDUIT_WANT_WRITE;
}

/* Move what can move now.  Returns CONDUIT_OK or the failure (recorded on
 * s); *moved says whether anything happened, for the idle clock. */
static int dir_pump(struct prog *p, struct session *s, struct dir *d,
                    bool *moved)
{
	for (int round = 0; round < DIR_ROUNDS && !d->done; round++) {
		bool progress = false;
		size_t n;
		int rc;
		if (d->len > d->off && d->dst->up) {
			rc = end_write(s, d->dst, d->buf + d->off,
			               d->len - d->off, &n);
			if (rc == CONDUIT_OK && n > 0) {
				d->off += n;
				progress = true;
			} else if (!is_want(rc) && rc != CONDUIT_OK) {
				return rc;
			}
		}
		if (d->off == d->len) {
			d->off = d->len = 0;
		} else if (d->off >= DIR_CAP / 2) {
			/* Make room at the tail so reading can go on while the
			 * sink drains; at most half the buffer is copied. */
			memmove(d->buf, d->buf + d->off, d->len - d->off);
			d->len -= d->off;
			d->off = 0;
		}
		if (!d->eof && d->len < DIR_CAP && d->src->up) {
			rc = end_read(s, d->src, d->buf + d->len,
			              DIR_CAP - d->len, &n);
			if (rc == CONDUIT_OK) {
				d->len += n;
				progress = true;
			} else if (rc == CONDUIT_EOF) {
				d->eof = true;
				if (dir_reads_stdin(d))
					p->stdin_eof = true;
				progress = true;
			} else if (!is_want(rc)) {
				return rc;
			}
		}
		if (d->eof && d->len == d->off && d->dst->up) {
			rc = end_shut(s, d->dst);
			if (rc != CONDUIT_OK)
				return rc;
			d->done = true;
			progress = true;
		}
		if (progress)
			*moved = true;
		else
			break;
	}
	return CONDUIT_OK;
}

static bool session_over(const struct session *s)
{
	for (size_t i = 0; i < s->ndir; i++)
		if (!s->dir[i].done)
			return false;
	return true;
}

static bool session_up(const struct session *s)
{
	for (size_t i = 0; i < s->nend; i++)
		if (!s->end[i].up)
			return false;
	return true;
}

/* Run a session as far as it goes without waiting. */
static int session_run(struct prog *p, struct session *s, uint64_t now)
{
	for (size_t i = 0; i < s->nend; i++) {
		struct end *e = &s->end[i];
		if (e->flow == NULL || e->up)
			continue;
		int rc = conduit_handshake(e->flow);
		if (rc == CONDUIT_OK)
			e->up = true;
		else if (!is_want(rc))
			return session_fail(s, rc, true,
			                    conduit_flow_error(e->flow));
	}
	bool moved = false;
	for (size_t i = 0; i < s->ndir; i++) {
		int rc = dir_pump(p, s, &s->dir[i], &moved);
		if (rc != CONDUIT_OK)
			return rc;
	}
	if (p->o->timeout_ms > 0 && session_up(s)) {
		if (moved || s->idle_at == UINT64_MAX)
			s->idle_at = now + (uint64_t)p->o->timeout_ms;
		else if (now >= s->idle_at) {
			char m[256];
			snprintf(m, sizeof(m), "%s: idle for %d ms",
			         s->end[0].flow != NULL
			             ? conduit_flow_uri(s->end[0].flow)
			             : "standard input",
			         p->o->timeout_ms);
			return session_fail(s, CONDUIT_ERR_TIMED_OUT, false, m);
		}
	}
	return CONDUIT_OK;
}

static struct session *session_new(struct prog *p)
{
	if (p->ns == p->scap) {
		size_t cap = p->scap ? p->scap * 2 : 8;
		struct session **n = realloc(p->s, cap * sizeof(*n));
		if (n == NULL)
			return NULL;
		p->s = n;
		p->scap = cap;
	}
	struct session *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->idle_at = UINT64_MAX;
	s->wake_at = UINT64_MAX;
	p->s[p->ns++] = s;
	return s;
}

/* Join a and b both ways (b NULL: echo a to itself). */
static bool session_join(struct session *s, bool echo)
{
	s->ndir = echo ? 1 : 2;
	for (size_t i = 0; i < s->ndir; i++) {
		struct dir *d = &s->dir[i];
		d->buf = malloc(DIR_CAP);
		if (d->buf == NULL)
			return false;
		d->src = &s->end[echo ? 0 : i];
		d->dst = &s->end[echo ? 0 : 1 - i];
	}
	return true;
}

static void session_free(struct session *s)
{
	for (size_t i = 0; i < s->nend; i++) {
		if (s->end[i].flow == NULL)
			continue;
		/* Socket flows close at once; a layer that still had a record
		 * to send would be cut short, which is what a failed session
		 * wants anyway. */
		conduit_close(s->end[i].flow);
		conduit_flow_free(s->end[i].flow);
	}
	for (size_t i = 0; i < s->ndir; i++)
		free(s->dir[i].buf);
	free(s);
}

/* ------------------------------------------------------------------ */
/* The loop                                                            */

/* The --lwip-dgram rendezvous (below): its descriptor while the other end
 * of the wire waits to be taken, else -1. */
static int wire_fd(void);
static int target_endpoint(conduit_ctx *ctx, const struct opts *o,
                           const char *uri, conduit_endpoint **ep);
static void wire_hand_over(bool verbose);

static bool fds_room(struct prog *p, size_t more)
{
	if (p->fdcap - p->nfds >= more)
		return true;
	size_t cap = p->fdcap ? p->fdcap : 32;
	while (cap - p->nfds < more)
		cap *= 2;
	struct pollfd *n = realloc(p->fds, cap * sizeof(*n));
	if (n == NULL)
		return false;
	p->fds = n;
	p->fdcap = cap;
	return true;
}

static void fds_add(struct prog *p, int fd, short events)
{
	/* Room was made by the caller. */
	p->fds[p->nfds].fd = fd;
	p->fds[p->nfds].events = events;
	p->fds[p->nfds].revents = 0;
	p->nfds++;
}

/* Append what items wait on; *tmo: the library's timeout for them. */
static int add_wait(struct prog *p, struct conduit_pollitem *items, size_t n,
                    int *tmo)
{
	size_t want = 8;
	for (;;) {
		if (!fds_room(p, want))
			return CONDUIT_ERR_NOMEM;
		size_t got = 0;
		int rc = conduit_wait_fds(p->ctx, items, n, p->fds + p->nfds,
		                          p->fdcap - p->nfds, &got, tmo);
		if (rc == CONDUIT_ERR_INVALID && got > p->fdcap - p->nfds) {
			want = got; /* too small: it told us the size */
			continue;
		}
		if (rc != CONDUIT_OK)
			return rc;
		p->nfds += got;
		return CONDUIT_OK;
	}
}

static unsigned interest(const struct session *s, const struct end *e,
                         unsigned *stdin_ev, unsigned *stdout_ev)
{
	unsigned ev = 0;
	if (e->flow != NULL && !e->up)
		return CONDUIT_POLLOUT;
	for (size_t i = 0; i < s->ndir; i++) {
		const struct dir *d = &s->dir[i];
		/* Reading goes on while the partner connects, until the
		 * buffer is full. */
		if (d->src == e && !d->eof && d->len < DIR_CAP)
			ev |= CONDUIT_POLLIN;
		if (d->dst == e && d->len > d->off)
			ev |= CONDUIT_POLLOUT;
	}
	if (e->flow == NULL) {
		*stdin_ev = ev & CONDUIT_POLLIN;
		*stdout_ev = ev & CONDUIT_POLLOUT;
	}
	return ev;
}

/* Gather one session's descriptors and deadlines. */
static int session_wait(struct prog *p, struct session *s, uint64_t now,
                        int *timeout)
{
	struct conduit_pollitem items[2];
	size_t n = 0;
	unsigned in_ev = 0, out_ev = 0;
	for (size_t i = 0; i < s->nend; i++) {
		unsigned ev = interest(s, &s->end[i], &in_ev, &out_ev);
		if (s->end[i].flow != NULL) {
			items[n].flow = s->end[i].flow;
			items[n].listener = NULL;
			items[n].events = ev;
			n++;
		}
	}
	s->span_lo = p->nfds;
	int tmo = -1;
	int rc = add_wait(p, items, n, &tmo);
	if (rc != CONDUIT_OK)
		return rc;
	if (!fds_room(p, 2))
		return CONDUIT_ERR_NOMEM;
	if (in_ev)
		fds_add(p, STDIN_FILENO, POLLIN);
	if (out_ev)
		fds_add(p, STDOUT_FILENO, POLLOUT);
	s->span_hi = p->nfds;
	s->wake_at = tmo < 0 ? UINT64_MAX : now + (uint64_t)tmo;
	uint64_t at = s->wake_at < s->idle_at ? s->wake_at : s->idle_at;
	if (at != UINT64_MAX) {
		int ms = at <= now            ? 0
		         : at - now > INT_MAX ? INT_MAX
		                              : (int)(at - now);
		if (*timeout < 0 || ms < *timeout)
			*timeout = ms;
	}
	return CONDUIT_OK;
}

static bool accepting(const struct prog *p)
{
	if (p->l == NULL)
		return false;
	if (p->mode == MODE_STDIO)
		return p->ns ==
		       0; /* one connection at a time on stdin/stdout */
	return p->ns < p->max_sessions;
}

/* A session for a flow just accepted. */
static void start_session(struct prog *p, conduit_flow *f, uint64_t now)
{
	struct session *s = session_new(p);
	if (s == NULL || !session_join(s, p->mode == MODE_ECHO)) {
		say("%s: out of memory", conduit_flow_uri(f));
		if (s != NULL) {
			s->end[0].flow = f;
			s->nend = 1;
			session_fail(s, CONDUIT_ERR_NOMEM, false,
			             "out of memory");
		} else {
			conduit_flow_free(f);
		}
		return;
	}
	s->end[0].flow = f;
	/* Accepted flows go through conduit_handshake() too: a TLS server's
	 * handshake then fails as a connection failure (exit 4), before any
	 * byte or end of stream is passed on. */
	s->end[0].up = false;
	s->nend = p->mode == MODE_ECHO ? 1 : 2;
	if (p->mode == MODE_STDIO) {
		s->end[1].up = true;
		s->dir[1].eof = p->stdin_eof; /* dir 1 reads end 1: stdin */
	} else if (p->mode == MODE_RELAY) {
		conduit_flow *t = NULL;
		int rc = conduit_connect_endpoint(&t, p->ctx, p->target);
		if (rc != CONDUIT_OK) {
			s->nend = 1;
			session_fail(s, rc, true, conduit_ctx_error(p->ctx));
			return;
		}
		s->end[1].flow = t;
	}
	session_run(p, s, now);
}

static void accept_some(struct prog *p, uint64_t now)
{
	while (accepting(p)) {
		conduit_flow *f = NULL;
		int rc = conduit_accept(&f, p->l);
		if (is_want(rc))
			return;
		if (rc != CONDUIT_OK) {
			/* Out of descriptors and the like: the listener pauses
			 * by itself; the command goes on. */
			say("%s", conduit_listener_error(p->l));
			return;
		}
		p->accepted = true;
		if (p->o->keep == false && p->mode != MODE_RELAY) {
			/* One connection: stop listening, so later ones are
			 * refused rather than left waiting in the queue. */
			conduit_listener_free(p->l);
			p->l = NULL;
		}
		start_session(p, f, now);
	}
}

/* A session has ended: report it, and in single-session modes return the
 * exit status (-1 to go on). */
static int session_end(struct prog *p, struct session *s)
{
	int status = 0;
	const char *who =
	    s->end[0].flow != NULL ? conduit_flow_uri(s->end[0].flow) : "";
	if (s->rc != CONDUIT_OK) {
		status = s->in_setup ? setup_exit(s->rc) : EXIT_IO;
		if (p->single || p->mode == MODE_CAT)
			say("%s", s->msg);
		else
			say("%s %s: %s",
			    p->mode == MODE_RELAY ? "relay" : "serving", who,
			    s->msg);
	} else if (p->o->verbose) {
		struct conduit_flow_stats st;
		conduit_flow_stats(s->end[0].flow, &st);
		say("finished %s (%llu bytes in, %llu out)", who,
		    (unsigned long long)st.bytes_read,
		    (unsigned long long)st.bytes_written);
	}
	return p->single || p->mode == MODE_CAT ? status : -1;
}

/* Returns the exit status, or 128 + a signal number (re-raised by main). */
static int loop(struct prog *p)
{
	for (;;) {
		uint64_t now = tool_now_ms();
		int timeout = -1;
		p->nfds = 0;
		if (!fds_room(p, 1))
			goto nomem;
		fds_add(p, sig_pipe[0], POLLIN);
		/* --lwip-dgram: the other end of the wire not yet taken. */
		size_t w_at = SIZE_MAX;
		if (wire_fd() >= 0) {
			if (!fds_room(p, 1))
				goto nomem;
			w_at = p->nfds;
			fds_add(p, wire_fd(), POLLIN);
		}

		size_t l_lo = p->nfds, l_hi = p->nfds;
		bool l_now = false;
		if (accepting(p)) {
			struct conduit_pollitem it = {.listener = p->l,
			                              .events = CONDUIT_POLLIN};
			int tmo = -1;
			if (add_wait(p, &it, 1, &tmo) != CONDUIT_OK)
				goto nomem;
			l_hi = p->nfds;
			l_now = tmo == 0;
			if (tmo >= 0 && (timeout < 0 || tmo < timeout))
				timeout = tmo;
		}
		for (size_t i = 0; i < p->ns; i++)
			if (session_wait(p, p->s[i], now, &timeout) !=
			    CONDUIT_OK)
				goto nomem;

		int r = poll(p->fds, (nfds_t)p->nfds, timeout);
		if (r < 0 && errno != EINTR) {
			say("poll: %s", strerror(errno));
			return EXIT_IO;
		}
		conduit_process(p->ctx);
		now = tool_now_ms();

		unsigned char sig = 0;
		if (read(sig_pipe[0], &sig, 1) == 1)
			return 128 + sig;
		if (w_at != SIZE_MAX && p->fds[w_at].revents != 0)
			wire_hand_over(p->o->verbose);

		bool l_ready = l_now;
		for (size_t k = l_lo; k < l_hi; k++)
			if (p->fds[k].revents != 0)
				l_ready = true;
		/* Sessions first: accepting adds sessions whose spans are
		 * not in this round's array. */
		for (size_t i = 0; i < p->ns; i++) {
			struct session *s = p->s[i];
			bool ready = now >= s->wake_at || now >= s->idle_at;
			for (size_t k = s->span_lo; k < s->span_hi && !ready;
			     k++)
				if (p->fds[k].revents != 0)
					ready = true;
			if (ready && s->rc == CONDUIT_OK)
				session_run(p, s, now);
		}
		if (l_ready)
			accept_some(p, now);
		/* Retire finished sessions (in place, keeping order). */
		size_t keep = 0;
		int status = -1;
		for (size_t i = 0; i < p->ns; i++) {
			struct session *s = p->s[i];
			if (s->rc == CONDUIT_OK && !session_over(s)) {
				p->s[keep++] = s;
				continue;
			}
			int st = session_end(p, s);
			if (st >= 0)
				status = st;
			session_free(s);
		}
		p->ns = keep;
		if (status >= 0)
			return status;
	}
nomem:
	say("out of memory");
	return EXIT_IO;
}

/* ------------------------------------------------------------------ */
/* Subcommands                                                         */

static int cmd_resolve(conduit_ctx *ctx, const char *uri, bool explain)
{
	conduit_endpoint *ep = NULL;
	conduit_explain *x = NULL;
	int rc = explain ? conduit_resolve_explain(&ep, &x, ctx, uri)
	                 : conduit_resolve(&ep, ctx, uri);
	for (size_t i = 0; i < conduit_explain_count(x); i++)
		printf("  %s\n", conduit_explain_step(x, i));
	conduit_explain_free(x);
	if (rc != CONDUIT_OK) {
		fflush(stdout);
		say("%s", conduit_ctx_error(ctx));
		return setup_exit(rc);
	}
	printf("%s\n", conduit_endpoint_uri(ep));
	for (size_t i = 0; i < conduit_endpoint_address_count(ep); i++) {
		char buf[128];
		printf("  address %s\n",
		       conduit_addr_format(conduit_endpoint_address(ep, i), buf,
		                           sizeof(buf)));
	}
	conduit_endpoint_free(ep);
	if (fflush(stdout) != 0) {
		say("write standard output: %s", strerror(errno));
		return EXIT_IO;
	}
	return 0;
}

static size_t session_limit(void)
{
	/* Each relay session holds two descriptors; leave some spare for
	 * the listener, stdio and the self-pipe. */
	struct rlimit rl;
	size_t n = MAX_SESSIONS;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur / 2 < n + 16)
		n = rl.rlim_cur > 48 ? (size_t)(rl.rlim_cur - 32) / 2 : 1;
	return n;
}

static int run(conduit_ctx *ctx, const struct opts *o)
{
	struct prog p = {
	    .ctx = ctx,
	    .o = o,
	    .max_sessions = session_limit(),
	};
	int status;
	if (signals_setup() < 0) {
		say("pipe: %s", strerror(errno));
		return EXIT_IO;
	}

	if (o->cmd == CMD_CAT) {
		p.mode = MODE_CAT;
		conduit_flow *f = NULL;
		conduit_endpoint *ep = NULL;
		if (o->servername != NULL) {
			status = target_endpoint(ctx, o, o->args[0], &ep);
			if (status != 0)
				goto out;
		}
		int rc = ep != NULL ? conduit_connect_endpoint(&f, ctx, ep)
		                    : conduit_connect(&f, ctx, o->args[0]);
		conduit_endpoint_free(ep);
		if (rc != CONDUIT_OK) {
			say("%s", conduit_ctx_error(ctx));
			status = setup_exit(rc);
			goto out;
		}
		struct session *s = session_new(&p);
		if (s == NULL || !session_join(s, false)) {
			conduit_flow_free(f);
			say("out of memory");
			status = EXIT_IO;
			goto out;
		}
		s->end[0].flow = f;
		s->end[1].up = true;
		s->nend = 2;
	} else {
		if (o->cmd == CMD_RELAY) {
			p.mode = MODE_RELAY;
			/* Resolve the target first: a bad target URI is a usage
			 * problem to report before anyone connects. */
			status = target_endpoint(ctx, o, o->args[1], &p.target);
			if (status != 0)
				goto out;
		} else {
			p.mode = o->echo ? MODE_ECHO : MODE_STDIO;
			p.single = !o->keep;
		}
		int rc = conduit_listen(&p.l, ctx, o->args[0]);
		if (rc == CONDUIT_ERR_CERT && o->cert == NULL &&
		    strstr(o->args[0], "cert=") == NULL) {
			/* The library refuses a TLS listener with no
			 * certificate; here the certificate is an option. */
			say("listen %s: a TLS server needs a certificate: give "
			    "--cert FILE and --key FILE",
			    o->args[0]);
			status = EXIT_USAGE;
			goto out;
		}
		if (rc != CONDUIT_OK) {
			say("%s", conduit_ctx_error(ctx));
			/* A certificate or key that does not load is the
			 * user's to fix, as for --cert. */
			status = rc == CONDUIT_ERR_CERT ? EXIT_USAGE
			                                : setup_exit(rc);
			goto out;
		}
		fprintf(stderr, "listening on %s\n", conduit_listener_uri(p.l));
	}
	if (p.mode == MODE_CAT || p.mode == MODE_STDIO) {
		/* stdin not open at all reads as empty. */
		p.stdin_eof = !stdio_nonblock(STDIN_FILENO);
		if (p.ns > 0)
			p.s[0]->dir[1].eof = p.stdin_eof;
		stdio_nonblock(STDOUT_FILENO);
	}
	status = loop(&p);
out:
	for (size_t i = 0; i < p.ns; i++)
		session_free(p.s[i]);
	free(p.s);
	free(p.fds);
	conduit_listener_free(p.l);
	conduit_endpoint_free(p.target);
	stdio_restore();
	return status;
}

/* ------------------------------------------------------------------ */
/* TLS options: the context's trust, identity and checks               */

#ifdef CONDUIT_HAVE_TLS
/* A file an option names must exist and be readable: say which and why
 * here, before mbedTLS reduces it to "read/write of file failed". */
static bool readable(const char *opt, const char *path, bool dir_ok)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		say("%s %s: %s", opt, path, strerror(errno));
		return false;
	}
	if (S_ISDIR(st.st_mode) && !dir_ok) {
		say("%s %s: is a directory, not a file", opt, path);
		return false;
	}
	/* O_NONBLOCK: a FIFO named by mistake must not hang the command. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK |
	                        (S_ISDIR(st.st_mode) ? O_DIRECTORY : 0));
	if (fd < 0) {
		say("%s %s: %s", opt, path, strerror(errno));
		return false;
	}
	close(fd);
	return true;
}

/* The password of an encrypted key: arg is the value of the variable
 * --key-password-env names. */
static int key_password(char *buf, size_t size, const char *key, void *arg)
{
	(void)key;
	size_t n = strlen(arg);
	if (n > size || n > INT_MAX)
		return -1;
	memcpy(buf, arg, n);
	return (int)n;
}

/* Apply the TLS options to ctx.  Returns -1, or the exit status after
 * saying what is wrong (a file, a key, a password: all exit 2). */
static int tls_setup(conduit_ctx *ctx, const struct opts *o)
{
	if (o->ca != NULL) {
		if (!readable("--ca", o->ca, true))
			return EXIT_USAGE;
		if (conduit_tls_set_ca_file(ctx, o->ca) != CONDUIT_OK) {
			say("--ca %s: %s", o->ca, conduit_ctx_error(ctx));
			return EXIT_USAGE;
		}
	}
	if (o->pass_env != NULL) {
		/* A password on the command line would show in ps(1); the
		 * environment is private to the process.  Through the
		 * callback it serves --key and key= options alike. */
		const char *pass = secure_getenv(o->pass_env);
		if (pass == NULL) {
			say("--key-password-env %s: no such variable in the "
			    "environment",
			    o->pass_env);
			return EXIT_USAGE;
		}
		conduit_tls_set_password_cb(ctx, key_password, (void *)pass);
	}
	if (o->cert != NULL) {
		/* Without --key, the key is in the certificate's file (as
		 * curl and openssl s_server have it). */
		const char *key = o->key != NULL ? o->key : o->cert;
		if (!readable("--cert", o->cert, false) ||
		    (o->key != NULL && !readable("--key", key, false)))
			return EXIT_USAGE;
		if (conduit_tls_set_cert_file(ctx, o->cert, key, NULL) !=
		    CONDUIT_OK) {
			say("--cert %s, --key %s: %s", o->cert, key,
			    conduit_ctx_error(ctx));
			return EXIT_USAGE;
		}
	}
	if (o->client_auth >= 0) {
		static const int mode[] = {CONDUIT_TLS_VERIFY_NONE,
		                           CONDUIT_TLS_VERIFY_OPTIONAL,
		                           CONDUIT_TLS_VERIFY_REQUIRED};
		if (conduit_tls_set_client_auth(ctx, mode[o->client_auth]) !=
		    CONDUIT_OK) {
			say("--client-auth: %s", conduit_ctx_error(ctx));
			return EXIT_USAGE;
		}
	}
	if (o->alpn != NULL) {
		/* alpn_ok() has checked the list: at most ALPN_MAX names. */
		char buf[ALPN_MAX * 256];
		const char *names[ALPN_MAX + 1];
		size_t n = 0;
		snprintf(buf, sizeof(buf), "%s", o->alpn);
		for (char *p = buf, *save = NULL;
		     (p = strtok_r(p, ",", &save)) != NULL && n < ALPN_MAX;
		     p = NULL)
			names[n++] = p;
		names[n] = NULL;
		if (conduit_tls_set_alpn(ctx, names) != CONDUIT_OK) {
			say("--alpn %s: %s", o->alpn, conduit_ctx_error(ctx));
			return EXIT_USAGE;
		}
	}
	if (o->timeout_ms > 0)
		conduit_tls_set_handshake_timeout(ctx, (uint32_t)o->timeout_ms);
	if (o->insecure) {
		if (conduit_tls_insecure_no_verify(ctx, 1) != CONDUIT_OK) {
			say("--insecure: %s", conduit_ctx_error(ctx));
			return EXIT_USAGE;
		}
		say("warning: --insecure: certificates are not checked; the "
		    "peer is not authenticated and anyone on the path can "
		    "read and change the connection");
	}
	return -1;
}
#else
static int tls_setup(conduit_ctx *ctx, const struct opts *o)
{
	(void)ctx;
	if (o->ca == NULL && o->cert == NULL && o->alpn == NULL &&
	    o->client_auth < 0 && !o->insecure)
		return -1;
	say("TLS options: this build has no TLS (CONDUIT_WITH_TLS=OFF)");
	return EXIT_USAGE;
}
#endif

/* ------------------------------------------------------------------ */
/* --servername: the endpoint with servername=NAME                     */

/*
 * Resolve uri (into *ep) and, with --servername, replace the endpoint by
 * the same endpoint with servername=NAME: the canonical URI with any
 * servername= pair dropped and the new one added.  Returns 0, or an exit
 * status after saying why.
 */
static int target_endpoint(conduit_ctx *ctx, const struct opts *o,
                           const char *uri, conduit_endpoint **ep)
{
	*ep = NULL;
	int rc = conduit_resolve(ep, ctx, uri);
	if (rc != CONDUIT_OK) {
		say("%s", conduit_ctx_error(ctx));
		return setup_exit(rc);
	}
	if (o->servername == NULL)
		return 0;
	bool tls = false;
	for (size_t i = 0; i < conduit_endpoint_layer_count(*ep); i++)
		tls |= strcmp(conduit_endpoint_layer(*ep, i), "tls") == 0;
	if (!tls) {
		say("--servername: %s is not TLS (it resolves to %s)", uri,
		    conduit_endpoint_uri(*ep));
		conduit_endpoint_free(*ep);
		*ep = NULL;
		return EXIT_USAGE;
	}
	const char *cu = conduit_endpoint_uri(*ep);
	size_t ql = strcspn(cu, "?");
	size_t cap = strlen(cu) + strlen(o->servername) + 16;
	char *nu = malloc(cap);
	if (nu == NULL) {
		say("out of memory");
		return EXIT_IO;
	}
	memcpy(nu, cu, ql);
	size_t n = ql;
	char sep = '?';
	for (const char *p = cu[ql] == '?' ? cu + ql + 1 : NULL; p != NULL;) {
		const char *amp = strchr(p, '&');
		size_t pl = amp != NULL ? (size_t)(amp - p) : strlen(p);
		if (strncmp(p, "servername=", 11) != 0) {
			nu[n++] = sep;
			memcpy(nu + n, p, pl);
			n += pl;
			sep = '&';
		}
		p = amp != NULL ? amp + 1 : NULL;
	}
	snprintf(nu + n, cap - n, "%cservername=%s", sep, o->servername);
	char msg[512];
	conduit_endpoint *named = NULL;
	rc = conduit_endpoint_parse(&named, nu, msg, sizeof(msg));
	free(nu);
	conduit_endpoint_free(*ep);
	*ep = named;
	if (rc != CONDUIT_OK) {
		say("--servername: %s", msg);
		return EXIT_USAGE;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* --lwip-tap, --lwip-dgram: the context's TCP on lwIP                  */

/* WHERE,ADDR[/PREFIX][,GW], checked here so that a typo is named as such
 * (and before a TAP device is made or a wire joined). */
struct lwip_spec {
	char buf[PATH_MAX + 64];
	const char *where, *addr, *gw;
};

static bool ipv4_ok(const char *s)
{
	struct in_addr a;
	return inet_pton(AF_INET, s, &a) == 1;
}

static bool spec_parse(struct lwip_spec *sp, const char *opt, const char *what,
                       const char *spec)
{
	if (strlen(spec) >= sizeof(sp->buf)) {
		say("%s: argument too long", opt);
		return false;
	}
	strcpy(sp->buf, spec);
	char *addr = strchr(sp->buf, ',');
	if (addr == NULL || addr == sp->buf || addr[1] == '\0') {
		say("%s: expected %s,ADDR/PREFIX[,GW] (e.g. %s,10.0.0.2/24), "
		    "got '%s'",
		    opt, what, what, spec);
		return false;
	}
	*addr++ = '\0';
	char *gw = strchr(addr, ',');
	if (gw != NULL)
		*gw++ = '\0';
	char ip[INET_ADDRSTRLEN];
	const char *slash = strchr(addr, '/');
	size_t iplen = slash != NULL ? (size_t)(slash - addr) : strlen(addr);
	snprintf(ip, sizeof(ip), "%.*s", (int)iplen, addr);
	if (iplen >= sizeof(ip) || !ipv4_ok(ip)) {
		say("%s: '%.*s' is not an IPv4 address (ADDR/PREFIX, e.g. "
		    "10.0.0.2/24)",
		    opt, (int)iplen, addr);
		return false;
	}
	if (slash != NULL) {
		char *end;
		errno = 0;
		long pfx = strtol(slash + 1, &end, 10);
		if (slash[1] < '0' || slash[1] > '9' || *end != '\0' ||
		    errno != 0 || pfx < 1 || pfx > 32) {
			say("%s: bad prefix '/%s' in '%s' (a length from 1 to "
			    "32)",
			    opt, slash + 1, addr);
			return false;
		}
	}
	if (gw != NULL && !ipv4_ok(gw)) {
		say("%s: gateway '%s' is not an IPv4 address", opt, gw);
		return false;
	}
	sp->where = sp->buf;
	sp->addr = addr;
	sp->gw = gw;
	return true;
}

/*
 * The wire of --lwip-dgram: a SOCK_DGRAM socketpair whose ends are two
 * processes' netifs, so that each Ethernet frame is one datagram.  A
 * socketpair needs no address for either end, and a netif needs a
 * connected socket; the ends are dealt out through a rendezvous socket at
 * PATH.  The first process there makes the pair, keeps one end and listens
 * at PATH; the second connects and is handed the other end (SCM_RIGHTS),
 * after which PATH is removed: a wire joins exactly two processes.  The
 * first one does not wait for the second: frames it sends meanwhile queue
 * in the pair (or are dropped when the queue is full, as on a wire with
 * nobody at the other end), and TCP's retransmissions cover the rest.
 */
struct wire {
	int lfd;   /* rendezvous socket while the other end is unclaimed */
	int spare; /* that other end */
	dev_t dev; /* PATH's identity: remove only our own socket file */
	ino_t ino;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};
static struct wire wire = {.lfd = -1, .spare = -1};

/* How long a joining process waits for its end, without --timeout. */
#define WIRE_WAIT_MS 5000

static int wire_fd(void)
{
	return wire.lfd;
}

static void wire_close(void)
{
	struct stat st;
	if (wire.lfd >= 0) {
		if (lstat(wire.path, &st) == 0 && st.st_dev == wire.dev &&
		    st.st_ino == wire.ino)
			unlink(wire.path);
		close(wire.lfd);
		wire.lfd = -1;
	}
	if (wire.spare >= 0) {
		close(wire.spare);
		wire.spare = -1;
	}
}

#ifdef CONDUIT_HAVE_LWIP /* making and joining a wire */
static socklen_t wire_addr(struct sockaddr_un *sa, const char *path)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, path, strlen(path));
	return (socklen_t)sizeof(*sa);
}

/* Make the pair and listen at path.  The end for our netif, or -1 after
 * saying why; -2 (silently) when another process bound path first. */
static int wire_make(const char *path)
{
	int sp[2];
	if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sp) != 0) {
		say("--lwip-dgram %s: socketpair: %s", path, strerror(errno));
		return -1;
	}
	struct sockaddr_un sa;
	socklen_t len = wire_addr(&sa, path);
	int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int e = 0;
	if (l < 0) {
		e = errno;
	} else {
		/* The socket file is private to this user: whoever connects
		 * gets a wire into this process's stack. */
		mode_t old = umask(077);
		if (bind(l, (struct sockaddr *)&sa, len) != 0)
			e = errno;
		umask(old);
		struct stat st;
		if (e == 0 && (listen(l, 4) != 0 || lstat(path, &st) != 0))
			e = errno;
		if (e == 0) {
			wire.dev = st.st_dev;
			wire.ino = st.st_ino;
		}
	}
	if (e != 0) {
		if (l >= 0)
			close(l);
		close(sp[0]);
		close(sp[1]);
		if (e == EADDRINUSE)
			return -2;
		say("--lwip-dgram %s: %s", path, strerror(e));
		return -1;
	}
	wire.lfd = l;
	wire.spare = sp[1];
	snprintf(wire.path, sizeof(wire.path), "%s", path);
	return sp[0];
}

/* Connected to the rendezvous socket s: receive our end of the wire. */
static int wire_join(int s, const char *path, int wait_ms)
{
	struct pollfd pf = {.fd = s, .events = POLLIN};
	int r;
	do
		r = poll(&pf, 1, wait_ms);
	while (r < 0 && errno == EINTR);
	if (r == 0) {
		say("--lwip-dgram %s: the process that made the wire did not "
		    "hand it over within %d ms",
		    path, wait_ms);
		return -1;
	}
	char byte;
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	struct msghdr m = {.msg_iov = &iov,
	                   .msg_iovlen = 1,
	                   .msg_control = ctl.buf,
	                   .msg_controllen = sizeof(ctl.buf)};
	ssize_t n;
	do
		n = recvmsg(s, &m, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&m) : NULL;
	if (c == NULL || c->cmsg_level != SOL_SOCKET ||
	    c->cmsg_type != SCM_RIGHTS ||
	    c->cmsg_len != CMSG_LEN(sizeof(int))) {
		say("--lwip-dgram %s: %s", path,
		    n < 0 ? strerror(errno)
		    : n == 0
		        ? "the wire was taken by another process"
		        : "not a conduit wire (no socket was handed over)");
		return -1;
	}
	int fd;
	memcpy(&fd, CMSG_DATA(c), sizeof(fd));
	int type = 0;
	socklen_t tlen = sizeof(type);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 ||
	    type != SOCK_DGRAM) {
		close(fd);
		say("--lwip-dgram %s: not a conduit wire (the socket handed "
		    "over is not a datagram socket)",
		    path);
		return -1;
	}
	return fd;
}

/* Make the wire at path or join the one there.  Our end, or -1. */
static int wire_open(const char *path, int wait_ms, bool verbose)
{
	if (strlen(path) >= sizeof(wire.path)) {
		say("--lwip-dgram %s: path too long (at most %zu bytes)", path,
		    sizeof(wire.path) - 1);
		return -1;
	}
	int refused = 0;
	for (int attempt = 0; attempt < 4; attempt++) {
		struct sockaddr_un sa;
		socklen_t len = wire_addr(&sa, path);
		int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (s < 0) {
			say("--lwip-dgram %s: %s", path, strerror(errno));
			return -1;
		}
		if (connect(s, (struct sockaddr *)&sa, len) == 0) {
			int fd = wire_join(s, path, wait_ms);
			close(s);
			if (fd >= 0 && verbose)
				say("wire %s: joined", path);
			return fd;
		}
		int e = errno;
		close(s);
		struct stat st;
		if (e == ECONNREFUSED && lstat(path, &st) == 0 &&
		    S_ISSOCK(st.st_mode)) {
			/* Nobody listens: a wire whose maker died, or one
			 * between bind() and listen().  Ask twice before
			 * calling it stale. */
			if (refused++ == 0) {
				struct timespec nap = {0, 100000000};
				nanosleep(&nap, NULL);
				continue;
			}
			unlink(path);
			e = ENOENT;
		}
		if (e != ENOENT) {
			say("--lwip-dgram %s: %s", path, strerror(e));
			return -1;
		}
		int fd = wire_make(path);
		if (fd == -2)
			continue; /* another process made it first: join */
		if (fd >= 0 && verbose)
			say("wire %s: made; waiting for the other process",
			    path);
		return fd;
	}
	say("--lwip-dgram %s: could neither make nor join a wire there", path);
	return -1;
}

#endif /* CONDUIT_HAVE_LWIP */

/* The loop saw the rendezvous socket readable: hand the spare end to the
 * process that connected, and stop listening. */
static void wire_hand_over(bool verbose)
{
	int c = accept4(wire.lfd, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0)
		return;
	char byte = 'w';
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	memset(&ctl, 0, sizeof(ctl));
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	struct msghdr m = {.msg_iov = &iov,
	                   .msg_iovlen = 1,
	                   .msg_control = ctl.buf,
	                   .msg_controllen = sizeof(ctl.buf)};
	struct cmsghdr *h = CMSG_FIRSTHDR(&m);
	h->cmsg_level = SOL_SOCKET;
	h->cmsg_type = SCM_RIGHTS;
	h->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(h), &wire.spare, sizeof(int));
	ssize_t n;
	do
		n = sendmsg(c, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	close(c);
	if (n != 1)
		return; /* that one went away; wait for the next */
	if (verbose)
		say("wire %s: the other process joined", wire.path);
	wire_close();
}

#ifdef CONDUIT_HAVE_LWIP
/* Parse the --lwip-* option, make the stack and its netif, and put ctx
 * on it.  *handle is the stack reference, for lwip_teardown().  Returns 0,
 * or -1 after saying why. */
static int lwip_setup(conduit_ctx *ctx, const struct opts *o, void **handle)
{
	bool tap = o->lwip_tap != NULL;
	const char *opt = tap ? "--lwip-tap" : "--lwip-dgram";
	struct lwip_spec sp;
	if (!spec_parse(&sp, opt, tap ? "NAME" : "PATH",
	                tap ? o->lwip_tap : o->lwip_dgram))
		return -1;
	if (tap && strlen(sp.where) > 15) {
		say("--lwip-tap: interface name '%s' is longer than 15 bytes",
		    sp.where);
		return -1;
	}
	conduit_lwip *st = NULL;
	conduit_lwip_netif *nif = NULL;
	struct conduit_lwip_netif_config cfg = {
	    .ipv4 = sp.addr, .gateway4 = sp.gw, .is_default = 1};
	if (conduit_lwip_stack(&st) != CONDUIT_OK) {
		say("%s: cannot start lwIP", opt);
		return -1;
	}
	int rc;
	if (tap) {
		rc = conduit_lwip_netif_tap(&nif, st, sp.where, &cfg);
	} else {
		int fd = wire_open(
		    sp.where, o->timeout_ms > 0 ? o->timeout_ms : WIRE_WAIT_MS,
		    o->verbose);
		if (fd < 0) {
			conduit_lwip_release(st);
			return -1;
		}
		/* The netif owns fd from here, also on failure. */
		rc = conduit_lwip_netif_dgram(&nif, st, fd, &cfg);
	}
	if (rc != CONDUIT_OK) {
		say("%s: %s", opt, conduit_lwip_error(st));
	} else if ((rc = conduit_ctx_use_lwip(ctx, st)) != CONDUIT_OK) {
		say("%s: %s", opt, conduit_ctx_error(ctx));
	}
	if (rc != CONDUIT_OK) {
		conduit_lwip_release(st);
		wire_close();
		return -1;
	}
	*handle = st;
	return 0;
}

/*
 * lwIP is this process's own TCP: a connection closed a moment ago may
 * still have data and its FIN in lwIP's queues, and nothing but this
 * process will ever send them.  So before exiting, go on driving the stack
 * (bounded, and cut short by a signal) until lwIP holds no connection in
 * its active list, i.e. every closing handshake is over, as the kernel
 * does for a process that exits with data unsent.
 */
#define LINGER_MS 5000
static void lwip_linger(conduit_ctx *ctx, void *handle)
{
	uint64_t end = tool_now_ms() + LINGER_MS;
	for (;;) {
		conduit_process(ctx);
		struct conduit_lwip_stats s;
		conduit_lwip_stats(handle, &s);
		uint64_t now = tool_now_ms();
		if ((s.lwip_active == 0 && s.frames == 0) || now >= end)
			return;
		struct pollfd fds[32];
		size_t n = 0;
		int tmo = -1;
		if (conduit_wait_fds(ctx, NULL, 0, fds, 31, &n, &tmo) !=
		    CONDUIT_OK)
			return;
		if (sig_pipe[0] >= 0)
			fds[n++] = (struct pollfd){.fd = sig_pipe[0],
			                           .events = POLLIN};
		int left = (int)(end - now);
		if (tmo < 0 || tmo > left)
			tmo = left;
		if (poll(fds, (nfds_t)n, tmo) > 0 && sig_pipe[0] >= 0 &&
		    fds[n - 1].revents != 0)
			return;
	}
}

/* After the context is freed: the last reference removes the netif. */
static void lwip_teardown(void *handle)
{
	if (handle != NULL)
		conduit_lwip_release(handle);
	wire_close();
}
#else
static int lwip_setup(conduit_ctx *ctx, const struct opts *o, void **handle)
{
	(void)ctx;
	(void)handle;
	bool tap = o->lwip_tap != NULL;
	const char *opt = tap ? "--lwip-tap" : "--lwip-dgram";
	struct lwip_spec sp;
	/* A typo is named as such, whatever the build. */
	if (!spec_parse(&sp, opt, tap ? "NAME" : "PATH",
	                tap ? o->lwip_tap : o->lwip_dgram))
		return -1;
	say("%s: this build has no lwIP (CONDUIT_WITH_LWIP=OFF)", opt);
	return -1;
}

static void lwip_linger(conduit_ctx *ctx, void *handle)
{
	(void)ctx;
	(void)handle;
}

static void lwip_teardown(void *handle)
{
	(void)handle;
	wire_close();
}
#endif

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "demo") == 0)
		return conduit_demo(argc - 1, argv + 1);
	struct opts o;
	memset(&o, 0, sizeof(o));
	int status = parse_args(argc, argv, &o);
	if (status >= 0)
		return status;
	if (o.help) {
		fputs(usage_for(o.cmd), stdout);
		return 0;
	}

	conduit_ctx *ctx = NULL;
	if (conduit_ctx_new(&ctx) != CONDUIT_OK) {
		say("out of memory");
		return EXIT_IO;
	}
	if (o.verbose)
		conduit_ctx_set_observer(ctx, observe, NULL);
	/* The URIs on a command line are the user's own: they may name
	 * files and weaken checks, as curl's options do. */
	conduit_ctx_allow_uri_options(ctx,
	                              CONDUIT_URI_FILES | CONDUIT_URI_INSECURE);
	if (o.timeout_ms > 0)
		conduit_ctx_set_connect_timeout(ctx, (uint32_t)o.timeout_ms);
	/* The command opts in to $CONDUIT_RULES; the library never reads
	 * the environment by itself.  secure_getenv: not for setuid runs. */
	const char *rules =
	    o.rules != NULL ? o.rules : secure_getenv("CONDUIT_RULES");
	if (rules != NULL && *rules != '\0' &&
	    conduit_ctx_load_rules(ctx, rules) != CONDUIT_OK) {
		say("%s", conduit_ctx_error(ctx));
		conduit_ctx_free(ctx);
		return EXIT_USAGE;
	}
	if ((status = tls_setup(ctx, &o)) >= 0) {
		conduit_ctx_free(ctx);
		return status;
	}
	void *lwip = NULL;
	if ((o.lwip_tap != NULL || o.lwip_dgram != NULL) &&
	    lwip_setup(ctx, &o, &lwip) != 0) {
		conduit_ctx_free(ctx);
		return EXIT_USAGE;
	}

	if (o.cmd == CMD_RESOLVE)
		status = cmd_resolve(ctx, o.args[0], o.explain);
	else
		status = run(ctx, &o);
	if (lwip != NULL && status < 128)
		lwip_linger(ctx, lwip);
	conduit_ctx_free(ctx);
	lwip_teardown(lwip);

	if (status > 128) {
		/* Interrupted: everything is cleaned up; die of the signal
		 * so the caller sees what happened. */
		signal(status - 128, SIG_DFL);
		raise(status - 128);
		return status;
	}
	return status;
}
