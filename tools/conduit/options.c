/*
 * options.c - the `conduit` command line, parsed with getopt_long
 * (through tools/common's rules: full spellings, `--name VALUE` or
 * `--name=VALUE`, options before or after the command), and its help
 * texts.
 */
#include "args.h"
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

const char *usage_for(enum cmd c)
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

/* The options; a value option's val is its index in a switch below. */
enum {
	O_HELP = 'h',
	O_VERBOSE = 'v',
	O_EXPLAIN = 256,
	O_RULES,
	O_LWIP_TAP,
	O_LWIP_DGRAM,
	O_CA,
	O_CERT,
	O_KEY,
	O_PASS_ENV,
	O_CLIENT_AUTH,
	O_ALPN,
	O_SERVERNAME,
	O_INSECURE,
	O_KEEP,
	O_ECHO,
	O_TIMEOUT,
};

static const struct option longs[] = {
    {"help", no_argument, NULL, O_HELP},
    {"verbose", no_argument, NULL, O_VERBOSE},
    {"explain", no_argument, NULL, O_EXPLAIN},
    {"rules", required_argument, NULL, O_RULES},
    {"lwip-tap", required_argument, NULL, O_LWIP_TAP},
    {"lwip-dgram", required_argument, NULL, O_LWIP_DGRAM},
    {"ca", required_argument, NULL, O_CA},
    {"cert", required_argument, NULL, O_CERT},
    {"key", required_argument, NULL, O_KEY},
    {"key-password-env", required_argument, NULL, O_PASS_ENV},
    {"client-auth", required_argument, NULL, O_CLIENT_AUTH},
    {"alpn", required_argument, NULL, O_ALPN},
    {"servername", required_argument, NULL, O_SERVERNAME},
    {"insecure", no_argument, NULL, O_INSECURE},
    {"keep", no_argument, NULL, O_KEEP},
    {"echo", no_argument, NULL, O_ECHO},
    {"timeout", required_argument, NULL, O_TIMEOUT},
    {NULL, 0, NULL, 0},
};

/* An option naming a file: -1 when it has one, else the exit status. */
static int file_opt(const struct opts *o, const char *name, const char *v,
                    const char **dst)
{
	if (v == NULL || *v == '\0')
		return usage_error(o->cmd, "%s needs a file", name);
	*dst = v;
	return -1;
}

static int client_auth_opt(struct opts *o, const char *v)
{
	static const char *const modes[] = {"none", "optional", "required"};
	o->client_auth = -1;
	for (int m = 0; m < 3 && v != NULL; m++)
		if (strcmp(v, modes[m]) == 0)
			o->client_auth = m;
	if (o->client_auth < 0)
		return usage_error(o->cmd,
		                   "--client-auth: '%s' is not none, optional "
		                   "or required",
		                   v != NULL ? v : "");
	return -1;
}

/* One option c with its value v (NULL: none given).  -1, or the exit
 * status of a usage error. */
static int take_opt(struct opts *o, int c, const char *v, const char **keep_opt)
{
	switch (c) {
	case O_HELP:
		o->help = true;
		return -1;
	case O_VERBOSE:
		o->verbose = true;
		return -1;
	case O_EXPLAIN:
		o->explain = true;
		return -1;
	case O_INSECURE:
		o->insecure = true;
		return -1;
	case O_KEEP:
		o->keep = true;
		*keep_opt = "--keep";
		return -1;
	case O_ECHO:
		o->echo = true;
		*keep_opt = "--echo";
		return -1;
	case O_RULES:
		return file_opt(o, "--rules", v, &o->rules);
	case O_LWIP_TAP:
		if (v == NULL)
			return usage_error(o->cmd, "--lwip-tap needs "
			                           "NAME,ADDR/PREFIX[,GW]");
		o->lwip_tap = v;
		return -1;
	case O_LWIP_DGRAM:
		if (v == NULL)
			return usage_error(o->cmd, "--lwip-dgram needs "
			                           "PATH,ADDR/PREFIX[,GW]");
		o->lwip_dgram = v;
		return -1;
	case O_CA:
		return file_opt(o, "--ca", v, &o->ca);
	case O_CERT:
		return file_opt(o, "--cert", v, &o->cert);
	case O_KEY:
		return file_opt(o, "--key", v, &o->key);
	case O_PASS_ENV:
		if (v == NULL || *v == '\0')
			return usage_error(o->cmd,
			                   "--key-password-env needs the name "
			                   "of an environment variable");
		o->pass_env = v;
		return -1;
	case O_CLIENT_AUTH:
		return client_auth_opt(o, v);
	case O_ALPN:
		if (v == NULL || !alpn_ok(v))
			return usage_error(o->cmd,
			                   "--alpn: '%s' is not a list of 1 to "
			                   "%d protocol names (1 to 255 bytes "
			                   "each) separated by commas",
			                   v != NULL ? v : "", ALPN_MAX);
		o->alpn = v;
		return -1;
	case O_SERVERNAME:
		if (v == NULL || !servername_ok(v))
			return usage_error(o->cmd,
			                   "--servername: '%s' is not a host "
			                   "name or IP address",
			                   v != NULL ? v : "");
		o->servername = v;
		return -1;
	case O_TIMEOUT:
		if (v == NULL)
			return usage_error(o->cmd, "--timeout needs a value");
		if (!parse_ms(v, &o->timeout_ms))
			return usage_error(o->cmd,
			                   "--timeout: '%s' is not a positive "
			                   "number of milliseconds",
			                   v);
		return -1;
	default:
		return usage_error(o->cmd, "unknown option");
	}
}

/* The options' combinations, once all are known. */
static int check_opts(const struct opts *o, const char *keep_opt)
{
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

int parse_args(int argc, char **argv, struct opts *o)
{
	const char *keep_opt = NULL;
	struct tool_args a;
	tool_args_init(&a, argc, argv, "hv", longs);
	o->client_auth = -1;
	for (;;) {
		const char *v = NULL;
		int c = tool_getopt(&a, &v);
		if (c == TOOL_ARGS_END)
			break;
		if (c == TOOL_ARGS_UNKNOWN)
			return usage_error(o->cmd, "unknown option '%s'", v);
		if (c != TOOL_ARGS_OPERAND) {
			int st = take_opt(o, c, v, &keep_opt);
			if (st >= 0)
				return st;
			continue;
		}
		if (o->cmd == CMD_NONE) {
			for (int k = CMD_CAT; k <= CMD_RESOLVE; k++)
				if (strcmp(v, cmd_names[k]) == 0)
					o->cmd = (enum cmd)k;
			if (o->cmd == CMD_NONE) {
				if (o->help)
					break; /* `conduit --help bogus` */
				return usage_error(CMD_NONE,
				                   "unknown command '%s'", v);
			}
			continue;
		}
		if (o->nargs == 2)
			return usage_error(o->cmd, "unexpected argument '%s'",
			                   v);
		o->args[o->nargs++] = v;
	}
	if (o->help)
		return -1;
	return check_opts(o, keep_opt);
}
