/*
 * test_uri.c - the URI grammar and the endpoint value.  A table of good
 * URIs gives every field each should produce and its canonical form (and
 * each must round-trip); a table of bad URIs gives the status and a piece
 * of the message.  Around them: copying and comparing, redaction (no
 * password ever reaches a message), address text, input limits, error
 * buffers of every size, and a bounded, deterministic mutation fuzz.
 */
#include "core.h"
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#define SUN_MAX  (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
/* Messages stay below this however long the URI. */
#define MSG_LIMIT 300

#define NONE CONDUIT_HOST_NONE
#define NAME CONDUIT_HOST_NAME
#define V4   CONDUIT_HOST_IPV4
#define V6   CONDUIT_HOST_IPV6

struct good {
	const char *uri;
	const char *transport;
	const char *layers; /* innermost first, comma-separated */
	enum conduit_host_kind kind;
	const char *host;
	const char *zone;
	int port;
	const char *path;
	const char *opts; /* "k=v&k=v", decoded, sorted by key */
	const char *canon;
};

static const struct good goods[] = {
    /* tcp: names */
    {"tcp://example.org:80", "tcp", "", NAME, "example.org", "", 80, "", "",
     "tcp://example.org:80"},
    {"TCP://Example.ORG:0080", "tcp", "", NAME, "example.org", "", 80, "", "",
     "tcp://example.org:80"},
    {"tcp://EXAMPLE.org:80/", "tcp", "", NAME, "example.org", "", 80, "", "",
     "tcp://example.org:80"},
    {"tcp://my_host.example:5", "tcp", "", NAME, "my_host.example", "", 5, "",
     "", "tcp://my_host.example:5"},
    {"tcp://a-b.c-d:5", "tcp", "", NAME, "a-b.c-d", "", 5, "", "",
     "tcp://a-b.c-d:5"},
    {"tcp://example.org.:443", "tcp", "", NAME, "example.org.", "", 443, "", "",
     "tcp://example.org.:443"},
    {"tcp://%65xample.org:80", "tcp", "", NAME, "example.org", "", 80, "", "",
     "tcp://example.org:80"},
    {"tcp://a%2Eb:1", "tcp", "", NAME, "a.b", "", 1, "", "", "tcp://a.b:1"},
    {"tcp://xn--caf-dma.example:80", "tcp", "", NAME, "xn--caf-dma.example", "",
     80, "", "", "tcp://xn--caf-dma.example:80"},
    {"tcp://123.example:80", "tcp", "", NAME, "123.example", "", 80, "", "",
     "tcp://123.example:80"},
    {"tcp://1e100.net:443", "tcp", "", NAME, "1e100.net", "", 443, "", "",
     "tcp://1e100.net:443"},
    {"tcp://a.b.c.d.e.f:1", "tcp", "", NAME, "a.b.c.d.e.f", "", 1, "", "",
     "tcp://a.b.c.d.e.f:1"},
    {"tcp://localhost:1?nodelay=0", "tcp", "", NAME, "localhost", "", 1, "",
     "nodelay=0", "tcp://localhost:1?nodelay=0"},
    /* tcp: IPv4 */
    {"tcp://127.0.0.1:8080", "tcp", "", V4, "127.0.0.1", "", 8080, "", "",
     "tcp://127.0.0.1:8080"},
    {"tcp://0.0.0.0:80", "tcp", "", V4, "0.0.0.0", "", 80, "", "",
     "tcp://0.0.0.0:80"},
    {"tcp://255.255.255.255:1", "tcp", "", V4, "255.255.255.255", "", 1, "", "",
     "tcp://255.255.255.255:1"},
    {"tcp://%31.2.3.4:1", "tcp", "", V4, "1.2.3.4", "", 1, "", "",
     "tcp://1.2.3.4:1"},
    /* tcp: IPv6 and zones */
    {"tcp://[::1]:8443", "tcp", "", V6, "::1", "", 8443, "", "",
     "tcp://[::1]:8443"},
    {"tcp://[::]:80", "tcp", "", V6, "::", "", 80, "", "", "tcp://[::]:80"},
    {"tcp://[2001:DB8::1]:80", "tcp", "", V6, "2001:db8::1", "", 80, "", "",
     "tcp://[2001:db8::1]:80"},
    {"tcp://[0:0:0:0:0:0:0:1]:1", "tcp", "", V6, "0:0:0:0:0:0:0:1", "", 1, "",
     "", "tcp://[0:0:0:0:0:0:0:1]:1"},
    {"tcp://[::ffff:192.0.2.1]:80", "tcp", "", V6, "::ffff:192.0.2.1", "", 80,
     "", "", "tcp://[::ffff:192.0.2.1]:80"},
    {"tcp://[FE80::1%25eth0]:22", "tcp", "", V6, "fe80::1", "eth0", 22, "", "",
     "tcp://[fe80::1%25eth0]:22"},
    {"tcp://[fe80::a%25en%2D1]:1", "tcp", "", V6, "fe80::a", "en-1", 1, "", "",
     "tcp://[fe80::a%25en-1]:1"},
    {"tcp://[fe80::1%254]:9", "tcp", "", V6, "fe80::1", "4", 9, "", "",
     "tcp://[fe80::1%254]:9"},
    {"tcp://[fe80::1%25%41]:1", "tcp", "", V6, "fe80::1", "A", 1, "", "",
     "tcp://[fe80::1%25A]:1"},
    {"tcp://[fe80::1%25eth0.100]:1", "tcp", "", V6, "fe80::1", "eth0.100", 1,
     "", "", "tcp://[fe80::1%25eth0.100]:1"},
    {"tcp://[fe80::1%25a%2Fb]:1", "tcp", "", V6, "fe80::1", "a/b", 1, "", "",
     "tcp://[fe80::1%25a%2Fb]:1"},
    /* tcp: no host, ports */
    {"tcp://:0", "tcp", "", NONE, "", "", 0, "", "", "tcp://:0"},
    {"tcp://:65535/", "tcp", "", NONE, "", "", 65535, "", "", "tcp://:65535"},
    {"tcp://h:00000", "tcp", "", NAME, "h", "", 0, "", "", "tcp://h:0"},
    /* tcp: options */
    {"tcp://h:1?source=::1&nodelay=1&keepalive=060", "tcp", "", NAME, "h", "",
     1, "", "keepalive=60&nodelay=1&source=::1",
     "tcp://h:1?keepalive=60&nodelay=1&source=::1"},
    {"tcp://h:1?source=10.0.0.1", "tcp", "", NAME, "h", "", 1, "",
     "source=10.0.0.1", "tcp://h:1?source=10.0.0.1"},
    {"tcp://h:1?source=2001:DB8::2", "tcp", "", NAME, "h", "", 1, "",
     "source=2001:db8::2", "tcp://h:1?source=2001:db8::2"},
    {"tcp://h:1?nodelay=%31", "tcp", "", NAME, "h", "", 1, "", "nodelay=1",
     "tcp://h:1?nodelay=1"},
    {"tcp://h:1?keepalive=86400", "tcp", "", NAME, "h", "", 1, "",
     "keepalive=86400", "tcp://h:1?keepalive=86400"},
    {"tcp://h:1?keepalive=1", "tcp", "", NAME, "h", "", 1, "", "keepalive=1",
     "tcp://h:1?keepalive=1"},
    {"tcp://h:1?", "tcp", "", NAME, "h", "", 1, "", "", "tcp://h:1"},
    /* layers */
    {"tls+tcp://example.org:443", "tcp", "tls", NAME, "example.org", "", 443,
     "", "", "tls+tcp://example.org:443"},
    {"TLS+TCP://example.org:443", "tcp", "tls", NAME, "example.org", "", 443,
     "", "", "tls+tcp://example.org:443"},
    {"tls+unix:///run/app.sock", "unix", "tls", NONE, "", "", -1,
     "/run/app.sock", "", "tls+unix:///run/app.sock"},
    /* layer options and connect-to */
    {"tls+unix:///run/db.sock?servername=DB.Internal", "unix", "tls", NONE, "",
     "", -1, "/run/db.sock", "servername=db.internal",
     "tls+unix:///run/db.sock?servername=db.internal"},
    {"tls+tcp://example.com:443?connect-to=127.0.0.1:8443", "tcp", "tls", NAME,
     "example.com", "", 443, "", "connect-to=127.0.0.1:8443",
     "tls+tcp://example.com:443?connect-to=127.0.0.1:8443"},
    {"tcp://a.example:80?connect-to=%5B::1%5D:8080", "tcp", "", NAME,
     "a.example", "", 80, "", "connect-to=[::1]:8080",
     "tcp://a.example:80?connect-to=%5B::1%5D:8080"},
    {"tcp://a.example:80?connect-to=B.Example:81", "tcp", "", NAME, "a.example",
     "", 80, "", "connect-to=b.example:81",
     "tcp://a.example:80?connect-to=b.example:81"},
    {"tls+unix-abstract://svc", "unix-abstract", "tls", NONE, "", "", -1, "svc",
     "", "tls+unix-abstract://svc"},
    /* unix */
    {"unix:///run/app.sock", "unix", "", NONE, "", "", -1, "/run/app.sock", "",
     "unix:///run/app.sock"},
    {"UNIX:///tmp/s", "unix", "", NONE, "", "", -1, "/tmp/s", "",
     "unix:///tmp/s"},
    {"unix:rel/app.sock", "unix", "", NONE, "", "", -1, "rel/app.sock", "",
     "unix:rel/app.sock"},
    {"unix:x", "unix", "", NONE, "", "", -1, "x", "", "unix:x"},
    {"unix:/abs/x", "unix", "", NONE, "", "", -1, "/abs/x", "",
     "unix:///abs/x"},
    {"unix:///tmp/a%20b", "unix", "", NONE, "", "", -1, "/tmp/a b", "",
     "unix:///tmp/a%20b"},
    {"unix:///tmp/%61", "unix", "", NONE, "", "", -1, "/tmp/a", "",
     "unix:///tmp/a"},
    {"unix:%2Ftmp%2Fx", "unix", "", NONE, "", "", -1, "/tmp/x", "",
     "unix:///tmp/x"},
    {"unix:////double", "unix", "", NONE, "", "", -1, "//double", "",
     "unix:////double"},
    {"unix:a:b@c", "unix", "", NONE, "", "", -1, "a:b@c", "", "unix:a:b@c"},
    {"unix:///tmp/q%3fx%23y%25z", "unix", "", NONE, "", "", -1, "/tmp/q?x#y%z",
     "", "unix:///tmp/q%3Fx%23y%25z"},
    {"unix:///tmp/a!$&'()*+,;=:@b", "unix", "", NONE, "", "", -1,
     "/tmp/a!$&'()*+,;=:@b", "", "unix:///tmp/a!$&'()*+,;=:@b"},
    {"unix:///tmp/%C3%A9.sock", "unix", "", NONE, "", "", -1,
     "/tmp/\xc3\xa9.sock", "", "unix:///tmp/%C3%A9.sock"},
    {"unix:.%2F./s", "unix", "", NONE, "", "", -1, "././s", "", "unix:././s"},
    {"unix:///tmp/s?mode=0660", "unix", "", NONE, "", "", -1, "/tmp/s",
     "mode=0660", "unix:///tmp/s?mode=0660"},
    {"unix:///tmp/s?mode=660", "unix", "", NONE, "", "", -1, "/tmp/s",
     "mode=0660", "unix:///tmp/s?mode=0660"},
    {"unix:///tmp/s?mode=0", "unix", "", NONE, "", "", -1, "/tmp/s",
     "mode=0000", "unix:///tmp/s?mode=0000"},
    {"unix:///tmp/s?mode=0777", "unix", "", NONE, "", "", -1, "/tmp/s",
     "mode=0777", "unix:///tmp/s?mode=0777"},
    {"unix:///tmp/s?", "unix", "", NONE, "", "", -1, "/tmp/s", "",
     "unix:///tmp/s"},
    /* unix-abstract */
    {"unix-abstract://app", "unix-abstract", "", NONE, "", "", -1, "app", "",
     "unix-abstract://app"},
    {"unix-abstract://app/ctl", "unix-abstract", "", NONE, "", "", -1,
     "app/ctl", "", "unix-abstract://app/ctl"},
    {"unix-abstract:///x", "unix-abstract", "", NONE, "", "", -1, "/x", "",
     "unix-abstract:///x"},
    {"unix-abstract://a%3Ab", "unix-abstract", "", NONE, "", "", -1, "a:b", "",
     "unix-abstract://a%3Ab"},
    {"unix-abstract://a%40b", "unix-abstract", "", NONE, "", "", -1, "a@b", "",
     "unix-abstract://a%40b"},
    {"unix-abstract://x/y:z@w", "unix-abstract", "", NONE, "", "", -1,
     "x/y:z@w", "", "unix-abstract://x/y%3Az%40w"},
    {"unix-abstract://%C3%A9", "unix-abstract", "", NONE, "", "", -1,
     "\xc3\xa9", "", "unix-abstract://%C3%A9"},
    {"Unix-Abstract://Name", "unix-abstract", "", NONE, "", "", -1, "Name", "",
     "unix-abstract://Name"},
    {"unix-abstract://a%20b%3Fc", "unix-abstract", "", NONE, "", "", -1,
     "a b?c", "", "unix-abstract://a%20b%3Fc"},
    /* vchan: a domain id or a XenStore name, and a port name */
    {"vchan://7/echo", "vchan", "", NONE, "7", "", -1, "echo", "",
     "vchan://7/echo"},
    {"VCHAN://007/Echo_1", "vchan", "", NONE, "7", "", -1, "Echo_1", "",
     "vchan://7/Echo_1"},
    {"vchan://Logger/syslog", "vchan", "", NONE, "logger", "", -1, "syslog", "",
     "vchan://logger/syslog"},
    {"vchan://0/x?write-ring=65536&read-ring=01024", "vchan", "", NONE, "0", "",
     -1, "x", "read-ring=1024&write-ring=65536",
     "vchan://0/x?read-ring=1024&write-ring=65536"},
    {"tls+vchan://db-1/https", "vchan", "tls", NONE, "db-1", "", -1, "https",
     "", "tls+vchan://db-1/https"},
};

struct bad {
	const char *uri;
	int status;
	const char *msg; /* must occur in the message */
};

static const struct bad bads[] = {
    /* the whole input */
    {"", CONDUIT_ERR_URI, "empty URI"},
    {"tcp://h o:1", CONDUIT_ERR_URI, "invalid character 0x20 at offset 7"},
    {"tcp://h\n:1", CONDUIT_ERR_URI, "invalid character 0x0a at offset 7"},
    {"tcp://example.org:80 ", CONDUIT_ERR_URI,
     "invalid character 0x20 at offset 20"},
    {"tcp://h:1\x7f", CONDUIT_ERR_URI, "invalid character 0x7f at offset 9"},
    {"tcp://h:1\"", CONDUIT_ERR_URI, "invalid character 0x22 at offset 9"},
    {"unix:///tmp/\xff", CONDUIT_ERR_URI,
     "invalid character 0xff at offset 12"},
    {"tcp://h:1%", CONDUIT_ERR_URI, "malformed percent-escape at offset 9"},
    {"tcp://h%zz:1", CONDUIT_ERR_URI, "malformed percent-escape at offset 7"},
    {"tcp://h:1#frag", CONDUIT_ERR_URI, "fragment not allowed"},
    {"tcp://h:1#", CONDUIT_ERR_URI, "fragment not allowed"},
    {"tcp://bob:s3cret@host:1", CONDUIT_ERR_URI,
     "tcp://bob:****@host:1: userinfo not allowed"},
    {"tcp://bob@host:1", CONDUIT_ERR_URI, "userinfo not allowed"},
    {"unix://u:p@/tmp/x", CONDUIT_ERR_URI, "userinfo not allowed"},
    {"tcp://h:1/a[1]", CONDUIT_ERR_URI, "invalid character '[' in path"},
    {"tcp://h:1?a=[1]", CONDUIT_ERR_URI, "invalid character '[' in query"},
    /* schemes */
    {"/tmp/x.sock", CONDUIT_ERR_SCHEME, "no scheme"},
    {"localhost", CONDUIT_ERR_SCHEME, "no scheme"},
    {"://h:1", CONDUIT_ERR_SCHEME, "empty scheme"},
    {"http://example.org", CONDUIT_ERR_SCHEME, "unknown scheme \"http\""},
    {"tls://h:1", CONDUIT_ERR_SCHEME, "\"tls\" is a layer"},
    {"tls+tls+tcp://h:1", CONDUIT_ERR_SCHEME, "tls layer given twice"},
    {"tcp://h:1?servername=h", CONDUIT_ERR_OPTION,
     "unknown option \"servername\" for tcp"},
    {"tls+tcp://h:1?servername=a..b", CONDUIT_ERR_OPTION,
     "invalid value \"a..b\" for option servername"},
    {"tls+tcp://h:1?servername=-a.b", CONDUIT_ERR_OPTION,
     "no label starts or ends with '-'"},
    {"tcp://h:1?connect-to=127.0.0.1", CONDUIT_ERR_OPTION, "must be HOST:PORT"},
    {"tcp://h:1?connect-to=127.0.0.1:0", CONDUIT_ERR_OPTION,
     "must be HOST:PORT"},
    {"tcp://h:1?connect-to=::1:80", CONDUIT_ERR_OPTION, "must be HOST:PORT"},
    {"tcp://h:1?connect-to=a%20b:80", CONDUIT_ERR_OPTION, "must be HOST:PORT"},
    {"tcp+unix:///x", CONDUIT_ERR_SCHEME, "\"tcp\" is a transport"},
    {"foo+tcp://h:1", CONDUIT_ERR_SCHEME, "unknown layer \"foo\""},
    {"tls+foo://h:1", CONDUIT_ERR_SCHEME, "unknown transport \"foo\""},
    {"+tcp://h:1", CONDUIT_ERR_SCHEME, "scheme must start with a letter"},
    {"tls+://h:1", CONDUIT_ERR_SCHEME, "empty name in scheme"},
    {"1tcp://h:1", CONDUIT_ERR_SCHEME, "must start with a letter"},
    {"t_cp://h:1", CONDUIT_ERR_SCHEME, "invalid character '_' in scheme"},
    /* tcp shape */
    {"tcp:h:1", CONDUIT_ERR_URI, "tcp URIs need an authority"},
    {"tcp://h:1/path", CONDUIT_ERR_URI, "tcp URIs take no path"},
    {"tcp://h:1//", CONDUIT_ERR_URI, "tcp URIs take no path"},
    /* ports */
    {"tcp://example.org:99999", CONDUIT_ERR_PORT,
     "tcp://example.org:99999: port 99999 out of range 0-65535"},
    {"tcp://h:65536", CONDUIT_ERR_PORT, "port 65536 out of range 0-65535"},
    {"tcp://h:000065536", CONDUIT_ERR_PORT, "port 000065536 out of range"},
    {"tcp://h:123456789012345678901234567890", CONDUIT_ERR_PORT,
     "out of range"},
    {"tcp://h", CONDUIT_ERR_PORT, "port required"},
    {"tcp://[::1]", CONDUIT_ERR_PORT, "port required"},
    {"tcp://", CONDUIT_ERR_PORT, "port required"},
    {"tcp://h:", CONDUIT_ERR_PORT, "empty port"},
    {"tcp://h:8o", CONDUIT_ERR_PORT, "invalid port \"8o\""},
    {"tcp://h:-1", CONDUIT_ERR_PORT, "invalid port"},
    {"tcp://h:1:2", CONDUIT_ERR_PORT, "invalid port \"1:2\""},
    {"tcp://h:%38", CONDUIT_ERR_PORT, "invalid port"},
    /* hosts */
    {"tcp://1.2.3:80", CONDUIT_ERR_HOST, "not a valid IPv4 address"},
    {"tcp://256.1.1.1:80", CONDUIT_ERR_HOST, "not a valid IPv4 address"},
    {"tcp://0x7f.1:80", CONDUIT_ERR_HOST, "not a valid IPv4 address"},
    {"tcp://01.2.3.4:80", CONDUIT_ERR_HOST, "not a valid IPv4 address"},
    {"tcp://2130706433:80", CONDUIT_ERR_HOST, "not a valid IPv4 address"},
    {"tcp://1.2.3.4.:80", CONDUIT_ERR_HOST, "not a valid IPv4 address"},
    {"tcp://caf\xc3\xa9.example:80", CONDUIT_ERR_HOST,
     "non-ASCII host name; use its punycode (xn--) form"},
    {"tcp://caf%C3%A9.example:80", CONDUIT_ERR_HOST,
     "non-ASCII host name; use its punycode (xn--) form"},
    {"tcp://-a.example:1", CONDUIT_ERR_HOST, "starts or ends with '-'"},
    {"tcp://a_b-:1", CONDUIT_ERR_HOST, "starts or ends with '-'"},
    {"tcp://a..b:1", CONDUIT_ERR_HOST, "empty label"},
    {"tcp://.:1", CONDUIT_ERR_HOST, "empty label"},
    {"tcp://a!b:1", CONDUIT_ERR_HOST, "invalid character '!' in host name"},
    {"tcp://a%20b:1", CONDUIT_ERR_HOST, "invalid character 0x20 in host"},
    {"tcp://%00:1", CONDUIT_ERR_HOST, "NUL byte in host name"},
    {"tcp://"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:1",
     CONDUIT_ERR_HOST, "label is 64 bytes, limit 63"},
    {"tcp://%5B::1%5D:1", CONDUIT_ERR_HOST, "invalid character '['"},
    {"tcp://a]:1", CONDUIT_ERR_HOST, "invalid character ']' in host"},
    {"tcp://::1:80", CONDUIT_ERR_HOST, "must be written in brackets"},
    {"tcp://fe80::1", CONDUIT_ERR_HOST, "must be written in brackets"},
    {"tcp://[::1:80", CONDUIT_ERR_HOST, "without a closing ']'"},
    {"tcp://[::1]x:1", CONDUIT_ERR_HOST, "unexpected text after ']'"},
    {"tcp://[]:1", CONDUIT_ERR_HOST, "empty IPv6 address"},
    {"tcp://[1.2.3.4]:1", CONDUIT_ERR_HOST, "invalid IPv6 address"},
    {"tcp://[::g]:1", CONDUIT_ERR_HOST, "invalid IPv6 address"},
    {"tcp://[v1.x]:1", CONDUIT_ERR_HOST, "IPvFuture address not supported"},
    {"tcp://[fe80::1%eth0]:1", CONDUIT_ERR_HOST,
     "IPv6 zone must be written %25ZONE"},
    {"tcp://[fe80::1%2]:1", CONDUIT_ERR_HOST,
     "IPv6 zone must be written %25ZONE"},
    {"tcp://[fe80::1%eeth0]:1", CONDUIT_ERR_HOST,
     "IPv6 zone must be written %25ZONE"},
    {"tcp://[fe80::1%25]:1", CONDUIT_ERR_HOST, "empty IPv6 zone"},
    {"tcp://[fe80::1%25a!]:1", CONDUIT_ERR_HOST,
     "invalid character '!' in IPv6 zone"},
    {"tcp://[fe80::1%25a%20b]:1", CONDUIT_ERR_HOST,
     "invalid byte 0x20 in IPv6 zone"},
    /* options */
    {"tcp://h:1?nodelay=2", CONDUIT_ERR_OPTION,
     "invalid value \"2\" for option nodelay: must be 0 or 1"},
    {"tcp://h:1?nodelay=", CONDUIT_ERR_OPTION, "option nodelay"},
    {"tcp://h:1?foo=1", CONDUIT_ERR_OPTION,
     "unknown option \"foo\" for tcp (known: connect-to, keepalive, nodelay, "
     "source)"},
    {"tcp://h:1?NoDelay=1", CONDUIT_ERR_OPTION, "unknown option \"NoDelay\""},
    {"tcp://h:1?nodelay=1&nodelay=0", CONDUIT_ERR_OPTION,
     "option nodelay given twice"},
    {"tcp://h:1?nodelay", CONDUIT_ERR_OPTION,
     "option \"nodelay\" has no value"},
    {"tcp://h:1?keepalive=0", CONDUIT_ERR_OPTION, "option keepalive"},
    {"tcp://h:1?keepalive=86401", CONDUIT_ERR_OPTION, "from 1 to 86400"},
    {"tcp://h:1?keepalive=1s", CONDUIT_ERR_OPTION, "option keepalive"},
    {"tcp://h:1?source=example.org", CONDUIT_ERR_OPTION,
     "must be an IPv4 or IPv6 address"},
    {"tcp://h:1?source=fe80::1%25eth0", CONDUIT_ERR_OPTION, "option source"},
    {"tcp://h:1?source=[::1]", CONDUIT_ERR_URI, "in query"},
    {"tcp://h:1?=1", CONDUIT_ERR_OPTION, "empty option name"},
    {"tcp://h:1?nodelay=1&", CONDUIT_ERR_OPTION, "empty option"},
    {"tcp://h:1?&nodelay=1", CONDUIT_ERR_OPTION, "empty option"},
    {"tcp://h:1?nodelay=%00", CONDUIT_ERR_OPTION, "NUL byte in option"},
    {"tcp://h:1?mode=0600", CONDUIT_ERR_OPTION, "unknown option \"mode\""},
    {"tcp://h:1?password=hunter2", CONDUIT_ERR_OPTION,
     "tcp://h:1?password=****: unknown option \"password\""},
    {"unix:///x?mode=0800", CONDUIT_ERR_OPTION, "octal permission"},
    {"unix:///x?mode=1000", CONDUIT_ERR_OPTION, "octal permission"},
    {"unix:///x?mode=-1", CONDUIT_ERR_OPTION, "option mode"},
    {"unix:///x?nodelay=1", CONDUIT_ERR_OPTION,
     "unknown option \"nodelay\" for unix (known: mode)"},
    {"unix-abstract://x?mode=0600", CONDUIT_ERR_OPTION,
     "unix-abstract URIs take no options"},
    /* unix */
    {"unix://host/x", CONDUIT_ERR_HOST, "unix URIs take no host"},
    {"unix://localhost/tmp/x", CONDUIT_ERR_HOST, "unix URIs take no host"},
    {"unix://:80/x", CONDUIT_ERR_PORT, "unix URIs take no port"},
    {"unix:", CONDUIT_ERR_URI, "empty socket path"},
    {"unix://", CONDUIT_ERR_URI, "empty socket path"},
    {"unix:?mode=0600", CONDUIT_ERR_URI, "empty socket path"},
    {"unix:///tmp/a%00b", CONDUIT_ERR_URI, "NUL byte (%00) in socket path"},
    {"unix:///tmp/[x]", CONDUIT_ERR_URI, "invalid character '[' in path"},
    /* unix-abstract */
    {"unix-abstract://", CONDUIT_ERR_URI, "empty abstract socket name"},
    {"unix-abstract:name", CONDUIT_ERR_URI, "need '//'"},
    {"unix-abstract://a:1", CONDUIT_ERR_PORT,
     "unix-abstract URIs take no port"},
    {"unix-abstract://a%00", CONDUIT_ERR_URI, "NUL byte (%00)"},
    {"unix-abstract://[x]", CONDUIT_ERR_URI, "invalid character '['"},
    /* vchan */
    {"vchan://7", CONDUIT_ERR_PORT, "need a port name"},
    {"vchan://7/", CONDUIT_ERR_PORT, "need a port name"},
    {"vchan:///echo", CONDUIT_ERR_HOST, "need a domain"},
    {"vchan://7:1/echo", CONDUIT_ERR_PORT, "not numbers after ':'"},
    {"vchan://32752/echo", CONDUIT_ERR_HOST, "out of range"},
    {"vchan://a.b/echo", CONDUIT_ERR_HOST, "invalid character '.'"},
    {"vchan://7/a/b", CONDUIT_ERR_PORT, "invalid character '/'"},
    {"vchan://7/a.b", CONDUIT_ERR_PORT, "invalid character '.'"},
    {"vchan://7/echo?read-ring=512", CONDUIT_ERR_OPTION, "from 1024"},
    {"vchan://7/echo?nodelay=1", CONDUIT_ERR_OPTION, "unknown option"},
    {"vchan://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/"
     "x",
     CONDUIT_ERR_HOST, "limit 63"},
};

/* ------------------------------------------------------------------ */
/* helpers                                                             */

static conduit_endpoint *parse_ok(const char *uri)
{
	conduit_endpoint *ep = NULL;
	char err[512];
	int rc = conduit_endpoint_parse(&ep, uri, err, sizeof(err));
	ck_assert_msg(rc == CONDUIT_OK, "parse \"%s\": %s (%s)", uri,
	              conduit_status_name(rc), err);
	ck_assert_ptr_nonnull(ep);
	ck_assert_str_eq(err, "");
	return ep;
}

static void layers_of(const conduit_endpoint *ep, char *buf, size_t len)
{
	size_t o = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < conduit_endpoint_layer_count(ep); i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? "," : "",
		                      conduit_endpoint_layer(ep, i));
	ck_assert_ptr_null(
	    conduit_endpoint_layer(ep, conduit_endpoint_layer_count(ep)));
}

/* Check the options against "k=v&k=v" (sorted by key). */
static void check_opts(const conduit_endpoint *ep, const char *want,
                       const char *uri)
{
	char buf[256];
	size_t n = 0;
	snprintf(buf, sizeof(buf), "%s", want);
	for (char *save = NULL, *kv = strtok_r(buf, "&", &save); kv != NULL;
	     kv = strtok_r(NULL, "&", &save)) {
		char *eq = strchr(kv, '=');
		ck_assert_ptr_nonnull(eq);
		*eq = '\0';
		const char *got = conduit_endpoint_option(ep, kv);
		ck_assert_msg(got != NULL && strcmp(got, eq + 1) == 0,
		              "%s: option %s is \"%s\", want \"%s\"", uri, kv,
		              got ? got : "(absent)", eq + 1);
		ck_assert_msg(n < ep->nopts && strcmp(ep->opts[n].key, kv) == 0,
		              "%s: option %zu is not %s (unsorted?)", uri, n,
		              kv);
		n++;
	}
	ck_assert_msg(ep->nopts == n, "%s: %zu options, want %zu", uri,
	              ep->nopts, n);
}

/* parse(print(ep)) equals ep and prints the same. */
static void check_roundtrip(const conduit_endpoint *ep, const char *from)
{
	const char *canon = conduit_endpoint_uri(ep);
	conduit_endpoint *again = NULL;
	char err[512];
	int rc = conduit_endpoint_parse(&again, canon, err, sizeof(err));
	ck_assert_msg(rc == CONDUIT_OK, "%s printed as \"%s\", which fails: %s",
	              from, canon, err);
	ck_assert_msg(conduit_endpoint_equal(ep, again),
	              "%s printed as \"%s\", which parses differently", from,
	              canon);
	ck_assert_msg(conduit_endpoint_equal(again, ep), "equal not symmetric");
	ck_assert_str_eq(conduit_endpoint_uri(again), canon);
	conduit_endpoint_free(again);
}

static bool printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

/* ------------------------------------------------------------------ */
/* tables                                                              */

START_TEST(test_good_table)
{
	ck_assert_uint_ge(NELEM(goods) + NELEM(bads), 70);
	for (size_t i = 0; i < NELEM(goods); i++) {
		const struct good *g = &goods[i];
		conduit_endpoint *ep = parse_ok(g->uri);
		char layers[64];
		layers_of(ep, layers, sizeof(layers));
		ck_assert_msg(
		    strcmp(conduit_endpoint_transport(ep), g->transport) == 0,
		    "%s: transport %s", g->uri, conduit_endpoint_transport(ep));
		ck_assert_msg(strcmp(layers, g->layers) == 0,
		              "%s: layers \"%s\"", g->uri, layers);
		ck_assert_msg(conduit_endpoint_host_kind(ep) == g->kind,
		              "%s: host kind %d", g->uri,
		              (int)conduit_endpoint_host_kind(ep));
		ck_assert_msg(strcmp(conduit_endpoint_host(ep), g->host) == 0,
		              "%s: host \"%s\"", g->uri,
		              conduit_endpoint_host(ep));
		ck_assert_msg(strcmp(conduit_endpoint_zone(ep), g->zone) == 0,
		              "%s: zone \"%s\"", g->uri,
		              conduit_endpoint_zone(ep));
		ck_assert_msg(conduit_endpoint_port(ep) == g->port,
		              "%s: port %d", g->uri, conduit_endpoint_port(ep));
		ck_assert_msg(strcmp(conduit_endpoint_path(ep), g->path) == 0,
		              "%s: path \"%s\"", g->uri,
		              conduit_endpoint_path(ep));
		check_opts(ep, g->opts, g->uri);
		ck_assert_msg(strcmp(conduit_endpoint_uri(ep), g->canon) == 0,
		              "%s: canonical \"%s\", want \"%s\"", g->uri,
		              conduit_endpoint_uri(ep), g->canon);
		ck_assert_uint_eq(conduit_endpoint_address_count(ep), 0);
		check_roundtrip(ep, g->uri);
		conduit_endpoint_free(ep);
	}
}
END_TEST

START_TEST(test_bad_table)
{
	size_t nbad = 0;
	for (size_t i = 0; i < NELEM(bads); i++) {
		const struct bad *b = &bads[i];
		conduit_endpoint *ep = (conduit_endpoint *)&ep; /* not NULL */
		char err[1024];
		int rc = conduit_endpoint_parse(&ep, b->uri, err, sizeof(err));
		ck_assert_msg(rc == b->status, "%s: %s, want %s (%s)", b->uri,
		              conduit_status_name(rc),
		              conduit_status_name(b->status), err);
		ck_assert_ptr_null(ep);
		ck_assert_msg(strstr(err, b->msg) != NULL,
		              "%s: message \"%s\" lacks \"%s\"", b->uri, err,
		              b->msg);
		/* The message opens with the URI, redacted, then ": ". */
		char shown[256];
		cd_uri_redact(b->uri, shown, sizeof(shown));
		size_t n = strlen(shown);
		ck_assert_msg(strncmp(err, shown, n) == 0 &&
		                  strncmp(err + n, ": ", 2) == 0,
		              "%s: message \"%s\" does not start with \"%s: \"",
		              b->uri, err, shown);
		ck_assert_msg(printable(err), "%s: raw bytes in message",
		              b->uri);
		ck_assert_uint_le(strlen(err), MSG_LIMIT);
		nbad++;
	}
	ck_assert_uint_ge(nbad, 30);
}
END_TEST

/* ------------------------------------------------------------------ */
/* the value                                                           */

START_TEST(test_dup_equal_free)
{
	conduit_endpoint_free(NULL);
	ck_assert_ptr_null(conduit_endpoint_dup(NULL));
	ck_assert(conduit_endpoint_equal(NULL, NULL));

	conduit_endpoint *ep =
	    parse_ok("tls+tcp://example.org:443?nodelay=0&keepalive=9");
	ck_assert(!conduit_endpoint_equal(ep, NULL));
	ck_assert(!conduit_endpoint_equal(NULL, ep));
	ck_assert(conduit_endpoint_equal(ep, ep));

	struct conduit_addr a[2];
	memset(a, 0, sizeof(a));
	a[0].family = CONDUIT_AF_INET;
	memcpy(a[0].bytes, "\x7f\0\0\x01", 4);
	a[1].family = CONDUIT_AF_INET6;
	a[1].bytes[15] = 1;
	a[1].scope = 2;
	ck_assert_int_eq(cd_endpoint_set_addresses(ep, a, 2), CONDUIT_OK);
	ck_assert_uint_eq(conduit_endpoint_address_count(ep), 2);
	ck_assert_ptr_null(conduit_endpoint_address(ep, 2));
	ck_assert_ptr_null(conduit_endpoint_address(NULL, 0));

	conduit_endpoint *d = conduit_endpoint_dup(ep);
	ck_assert_ptr_nonnull(d);
	ck_assert_ptr_ne(d, ep);
	ck_assert(conduit_endpoint_equal(ep, d));
	ck_assert_str_eq(conduit_endpoint_uri(d), conduit_endpoint_uri(ep));
	ck_assert_ptr_ne(conduit_endpoint_uri(d), conduit_endpoint_uri(ep));
	ck_assert_str_eq(conduit_endpoint_option(d, "keepalive"), "9");
	ck_assert_str_eq(conduit_endpoint_layer(d, 0), "tls");
	ck_assert_uint_eq(conduit_endpoint_address_count(d), 2);
	ck_assert_ptr_ne(conduit_endpoint_address(d, 0),
	                 conduit_endpoint_address(ep, 0));
	ck_assert_mem_eq(conduit_endpoint_address(d, 1), &a[1], sizeof(a[1]));

	/* Addresses do not take part in equality. */
	ck_assert_int_eq(cd_endpoint_set_addresses(d, NULL, 0), CONDUIT_OK);
	ck_assert_uint_eq(conduit_endpoint_address_count(d), 0);
	ck_assert(conduit_endpoint_equal(ep, d));

	/* Replacing the list with itself (or part of it) is safe. */
	ck_assert_int_eq(cd_endpoint_set_addresses(ep, ep->addrs + 1, 1),
	                 CONDUIT_OK);
	ck_assert_uint_eq(conduit_endpoint_address_count(ep), 1);
	ck_assert_mem_eq(conduit_endpoint_address(ep, 0), &a[1], sizeof(a[1]));
	ck_assert_int_eq(cd_endpoint_set_addresses(NULL, a, 1),
	                 CONDUIT_ERR_INVALID);
	conduit_endpoint_free(d);
	conduit_endpoint_free(ep);
}
END_TEST

START_TEST(test_equality_pairs)
{
	static const char *const same[][2] = {
	    {"TCP://H:01", "tcp://h:1"},
	    {"unix:/a", "unix:///a"},
	    {"unix:%2Fa", "unix:///a"},
	    {"tcp://h:1?nodelay=1&keepalive=5",
	     "tcp://h:1?keepalive=05&nodelay=1"},
	    {"unix:///s?mode=600", "unix:///s?mode=0600"},
	    {"unix-abstract://a/b", "unix-abstract://a%2Fb"},
	    {"tcp://[FE80::1%25eth0]:1", "tcp://[fe80::1%25%65th0]:1"},
	};
	static const char *const differ[][2] = {
	    {"tcp://h:1", "tcp://h:2"},
	    {"tcp://h:1", "tls+tcp://h:1"},
	    {"tcp://h:1", "tcp://h:1?nodelay=1"},
	    {"tcp://h:1?nodelay=0", "tcp://h:1?nodelay=1"},
	    {"tcp://[fe80::1]:1", "tcp://[fe80::1%25eth0]:1"},
	    {"tcp://[fe80::1%25eth0]:1", "tcp://[fe80::1%25ETH0]:1"},
	    {"tcp://[0::1]:1", "tcp://[::1]:1"},
	    {"tcp://h:1", "tcp://h.:1"},
	    {"unix:///a", "unix-abstract:///a"},
	    {"unix:a", "unix:///a"},
	    {"tcp://:1", "tcp://0.0.0.0:1"},
	};
	for (size_t i = 0; i < NELEM(same); i++) {
		conduit_endpoint *a = parse_ok(same[i][0]);
		conduit_endpoint *b = parse_ok(same[i][1]);
		ck_assert_msg(conduit_endpoint_equal(a, b), "%s != %s",
		              same[i][0], same[i][1]);
		ck_assert_str_eq(conduit_endpoint_uri(a),
		                 conduit_endpoint_uri(b));
		conduit_endpoint_free(a);
		conduit_endpoint_free(b);
	}
	for (size_t i = 0; i < NELEM(differ); i++) {
		conduit_endpoint *a = parse_ok(differ[i][0]);
		conduit_endpoint *b = parse_ok(differ[i][1]);
		ck_assert_msg(!conduit_endpoint_equal(a, b), "%s == %s",
		              differ[i][0], differ[i][1]);
		ck_assert_str_ne(conduit_endpoint_uri(a),
		                 conduit_endpoint_uri(b));
		conduit_endpoint_free(a);
		conduit_endpoint_free(b);
	}
}
END_TEST

START_TEST(test_accessors)
{
	ck_assert_str_eq(conduit_endpoint_uri(NULL), "");
	ck_assert_str_eq(conduit_endpoint_transport(NULL), "");
	ck_assert_uint_eq(conduit_endpoint_layer_count(NULL), 0);
	ck_assert_ptr_null(conduit_endpoint_layer(NULL, 0));
	ck_assert_int_eq(conduit_endpoint_host_kind(NULL), CONDUIT_HOST_NONE);
	ck_assert_str_eq(conduit_endpoint_host(NULL), "");
	ck_assert_str_eq(conduit_endpoint_zone(NULL), "");
	ck_assert_int_eq(conduit_endpoint_port(NULL), -1);
	ck_assert_str_eq(conduit_endpoint_path(NULL), "");
	ck_assert_ptr_null(conduit_endpoint_option(NULL, "mode"));
	ck_assert_uint_eq(conduit_endpoint_address_count(NULL), 0);

	conduit_endpoint *ep = parse_ok("unix:///tmp/s?mode=0600");
	ck_assert_ptr_null(conduit_endpoint_option(ep, NULL));
	ck_assert_ptr_null(conduit_endpoint_option(ep, "nodelay"));
	ck_assert_ptr_null(conduit_endpoint_option(ep, "mod"));
	ck_assert_ptr_null(conduit_endpoint_layer(ep, 0));
	/* Fields inside conduit are never NULL either. */
	ck_assert_ptr_nonnull(ep->host);
	ck_assert_ptr_nonnull(ep->zone);
	ck_assert_str_eq(ep->host, "");
	conduit_endpoint_free(ep);

	/* Transport and layer names are the static strings. */
	conduit_endpoint *a = parse_ok("TLS+TCP://h:1");
	conduit_endpoint *b = parse_ok("tls+tcp://h:2");
	ck_assert_ptr_eq(conduit_endpoint_transport(a),
	                 conduit_endpoint_transport(b));
	ck_assert_ptr_eq(conduit_endpoint_layer(a, 0),
	                 conduit_endpoint_layer(b, 0));
	conduit_endpoint_free(a);
	conduit_endpoint_free(b);
}
END_TEST

START_TEST(test_bad_arguments)
{
	char err[256];
	conduit_endpoint *ep = (conduit_endpoint *)&ep;
	ck_assert_int_eq(conduit_endpoint_parse(&ep, NULL, err, sizeof(err)),
	                 CONDUIT_ERR_INVALID);
	ck_assert_ptr_null(ep);
	ck_assert_ptr_nonnull(strstr(err, "no URI"));
	ck_assert_int_eq(
	    conduit_endpoint_parse(NULL, "tcp://h:1", err, sizeof(err)),
	    CONDUIT_ERR_INVALID);
	ck_assert_ptr_nonnull(strstr(err, "tcp://h:1: "));
	ck_assert_int_eq(conduit_endpoint_parse(NULL, NULL, NULL, 0),
	                 CONDUIT_ERR_INVALID);
}
END_TEST

/* ------------------------------------------------------------------ */
/* messages and buffers                                                */

START_TEST(test_errbuf_sizes)
{
	const char *uri = "tcp://example.org:99999";
	const char *full = "tcp://example.org:99999: port 99999 out of range "
	                   "0-65535";
	char err[64];
	conduit_endpoint *ep = NULL;
	for (size_t len = 1; len < sizeof(err) - 1; len++) {
		memset(err, 'Z', sizeof(err));
		ck_assert_int_eq(conduit_endpoint_parse(&ep, uri, err, len),
		                 CONDUIT_ERR_PORT);
		size_t want = strlen(full) < len - 1 ? strlen(full) : len - 1;
		ck_assert_uint_eq(strlen(err), want);
		ck_assert(strncmp(err, full, want) == 0);
		for (size_t i = len; i < sizeof(err); i++)
			ck_assert_msg(err[i] == 'Z',
			              "errlen %zu: byte %zu written", len, i);
	}
	/* errlen 1 and 8 by name, since they are the ones asked about. */
	memset(err, 'Z', sizeof(err));
	conduit_endpoint_parse(&ep, uri, err, 1);
	ck_assert_int_eq(err[0], '\0');
	ck_assert_int_eq(err[1], 'Z');
	memset(err, 'Z', sizeof(err));
	conduit_endpoint_parse(&ep, uri, err, 8);
	ck_assert_str_eq(err, "tcp://e");
	ck_assert_int_eq(err[8], 'Z');
	/* errlen 0: nothing written at all. */
	memset(err, 'Z', sizeof(err));
	ck_assert_int_eq(conduit_endpoint_parse(&ep, uri, err, 0),
	                 CONDUIT_ERR_PORT);
	ck_assert_int_eq(err[0], 'Z');
	/* err NULL, with or without a length. */
	ck_assert_int_eq(conduit_endpoint_parse(&ep, uri, NULL, 0),
	                 CONDUIT_ERR_PORT);
	ck_assert_int_eq(conduit_endpoint_parse(&ep, uri, NULL, 100),
	                 CONDUIT_ERR_PORT);
	ck_assert_ptr_null(ep);
	ck_assert_int_eq(conduit_endpoint_parse(&ep, "tcp://h:1", NULL, 100),
	                 CONDUIT_OK);
	conduit_endpoint_free(ep);
	/* Success clears an old message. */
	snprintf(err, sizeof(err), "stale");
	ck_assert_int_eq(
	    conduit_endpoint_parse(&ep, "tcp://h:1", err, sizeof(err)),
	    CONDUIT_OK);
	ck_assert_str_eq(err, "");
	conduit_endpoint_free(ep);
}
END_TEST

START_TEST(test_password_never_shown)
{
	static const char *const uris[] = {
	    "tcp://bob:s3cr3t@host:1",
	    "tcp://bob:s3cr3t@host:99999",
	    "tcp://bob:s3cr3t@host:1#frag",
	    "tcp://bob:s3cr3t@host:1/path",
	    "http://bob:s3cr3t@host:1",
	    "tcp://bob:s3cr3t@h o:1",
	    "tcp://bob:s3cr3t@host:1%zz",
	    "tcp://bob:s3cr3t@host:1\n",
	    "tcp://bob:s3cr3t@host:1?token=s3cr3t",
	    "tcp://b%6Fb:s3cr3t@host:1",
	    "tcp://bob:s3cr3t@[::1]:1",
	    "tcp://:s3cr3t@host:1",
	    "unix://bob:s3cr3t@/tmp/x",
	    "tls+tcp://bob:s3cr3t@h:1",
	    "bob:s3cr3t@host:1",
	    "tcp:bob:s3cr3t@host",
	    "tcp://bob:s3#cr3t@host:1",
	    "tcp://bob:s3?cr3t@host:1",
	    "tcp://bob:s3cr3t@a@host:1",
	    "tcp://h:1?password=s3cr3t",
	    "tcp://h:1?api_key=s3cr3t&x",
	    "tcp://h:1?nodelay=1&Secret=s3cr3t",
	    "tcp://h:1?my%54oken=s3cr3t",
	    "tcp://h:1?token=s3#cr3t",
	    "tcp://h:1?token=s3cr3t&token=s3cr3t",
	    "unix-abstract://x?passphrase=s3cr3t",
	    "nodelay=1tcp://bob:s3cr3t@h:1",
	    "tcp:/x/bob:s3cr3t@h:1",
	    "tcp://h:1?x=a:s3cr3t@b",
	};
	char err[512];
	for (size_t i = 0; i < NELEM(uris); i++) {
		conduit_endpoint *ep = NULL;
		int rc = conduit_endpoint_parse(&ep, uris[i], err, sizeof(err));
		ck_assert_msg(rc != CONDUIT_OK, "%s parsed", uris[i]);
		ck_assert_msg(strstr(err, "s3cr3t") == NULL &&
		                  strstr(err, "cr3t") == NULL &&
		                  strstr(err, "s3") == NULL,
		              "password shown: %s", err);
		ck_assert_msg(strstr(err, "****") != NULL, "no redaction: %s",
		              err);
	}
	/* A long URI: the password sits in the part that is shown. */
	size_t n = CD_URI_MAX + 100;
	char *big = malloc(n + 1);
	ck_assert_ptr_nonnull(big);
	memset(big, 'a', n);
	memcpy(big, "tcp://bob:s3cr3t@", 17);
	big[n] = '\0';
	conduit_endpoint *ep = NULL;
	ck_assert_int_eq(conduit_endpoint_parse(&ep, big, err, sizeof(err)),
	                 CONDUIT_ERR_URI);
	ck_assert_ptr_null(strstr(err, "s3cr3t"));
	ck_assert_ptr_nonnull(strstr(err, "tcp://bob:****@aaa"));
	free(big);
}
END_TEST

START_TEST(test_redact)
{
	static const char *const cases[][2] = {
	    {"tcp://bob:s3cret@host:1", "tcp://bob:****@host:1"},
	    {"tcp://bob@host:1", "tcp://bob@host:1"},
	    {"tcp://host:1", "tcp://host:1"},
	    {"tcp://:pw@host:1", "tcp://:****@host:1"},
	    {"tcp://a:b@c@h:1", "tcp://a:****@h:1"},
	    {"tcp://h:1?token=abc&nodelay=1", "tcp://h:1?token=****&nodelay=1"},
	    {"tcp://h:1?PassWord=x", "tcp://h:1?PassWord=****"},
	    {"tcp://h:1?apikey=x#frag", "tcp://h:1?apikey=****"},
	    {"tcp://h:1?client_secret=x&a=b",
	     "tcp://h:1?client_secret=****&a=b"},
	    {"tcp://h:1?my%54oken=x", "tcp://h:1?my%54oken=****"},
	    {"tcp://h:1?nodelay=1#x", "tcp://h:1?nodelay=1#x"},
	    {"tcp://h:1?secret", "tcp://h:1?secret"},
	    {"tcp://h:1?a=1&&b=2", "tcp://h:1?a=1&&b=2"},
	    {"tcp://h:1?k=v?token=x", "tcp://h:1?k=v?token=x"},
	    {"tcp://bob:pw@h:1?key=v", "tcp://bob:****@h:1?key=****"},
	    {"unix:///tmp/a@b:c", "unix:///tmp/a@b:c"},
	    {"unix:a:b@c", "unix:****@c"},
	    {"unix:///x?mode=0600", "unix:///x?mode=0600"},
	    {"bob:s3cret@host:1", "bob:****@host:1"},
	    {"tcp://h o\n:1", "tcp://h%20o%0A:1"},
	    {"tcp://\xc3\xa9:1", "tcp://%C3%A9:1"},
	    {"garbage:::@@@", "garbage:****@"},
	    {"nodelay=1tcp://bob:pw@h:1", "nodelay=1tcp://bob:****@h:1"},
	    {"tcp:/x/bob:pw@h:1", "tcp:/x/bob:****@h:1"},
	    {"tcp://bob:p/w@h:1", "tcp://bob:p/w@h:1"},
	    /* the price of the simple rule: such a path segment is hidden
	     * too (messages only; canonical URIs are never redacted) */
	    {"unix:///tmp/a:b@c", "unix:///tmp/a:****@c"},
	    {"@@::", "@@::"},
	    {"?token=", "?token="},
	    {"?token=x&b", "?token=****&b"},
	    {"", ""},
	};
	char out[128];
	for (size_t i = 0; i < NELEM(cases); i++) {
		cd_uri_redact(cases[i][0], out, sizeof(out));
		ck_assert_msg(strcmp(out, cases[i][1]) == 0,
		              "redact(\"%s\") = \"%s\", want \"%s\"",
		              cases[i][0], out, cases[i][1]);
	}
	cd_uri_redact(NULL, out, sizeof(out));
	ck_assert_str_eq(out, "(null)");
	cd_uri_redact("tcp://h:1", NULL, 10); /* no crash */

	/* Truncation: "..." at the end, never past outlen. */
	static const struct {
		size_t len;
		const char *want;
	} cut[] = {
	    {21, "tcp://example.org:80"},
	    {20, "tcp://example.or..."},
	    {10, "tcp://..."},
	    {5, "t..."},
	    {4, "..."},
	    {3, ".."},
	    {2, "."},
	    {1, ""},
	};
	for (size_t i = 0; i < NELEM(cut); i++) {
		memset(out, 'Z', sizeof(out));
		cd_uri_redact("tcp://example.org:80", out, cut[i].len);
		ck_assert_msg(strcmp(out, cut[i].want) == 0,
		              "outlen %zu: \"%s\", want \"%s\"", cut[i].len,
		              out, cut[i].want);
		ck_assert_int_eq(out[cut[i].len], 'Z');
	}
	memset(out, 'Z', sizeof(out));
	cd_uri_redact("tcp://h:1", out, 0);
	ck_assert_int_eq(out[0], 'Z');
	/* Truncating inside a password shows none of it. */
	cd_uri_redact("tcp://bob:s3cret@host:1", out, 12);
	ck_assert_str_eq(out, "tcp://bo...");
	cd_uri_redact("tcp://bob:s3cret@host:1", out, 16);
	ck_assert_str_eq(out, "tcp://bob:**...");
}
END_TEST

START_TEST(test_redact_garbage)
{
	/* Random bytes of every value but NUL, random output sizes: the
	 * result must be a NUL-terminated string inside the buffer. */
	uint64_t x = 0x2545F4914F6CDD1Dull;
	char in[200], out[80];
	for (int iter = 0; iter < 20000; iter++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		size_t n = x % sizeof(in);
		static const char spice[] = ":/@?#&=%[]+";
		for (size_t i = 0; i < n; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			unsigned c = (unsigned)(x >> 24) & 0xff;
			in[i] = (x & 3) ? spice[c % (sizeof(spice) - 1)]
			                : (char)(c ? c : 'a');
		}
		in[n] = '\0';
		size_t len = 1 + (x >> 40) % (sizeof(out) - 1);
		memset(out, 'Z', sizeof(out));
		cd_uri_redact(in, out, len);
		/* Plain tests in the loop: each passing ck_assert() costs a
		 * round trip to Check's parent process. */
		bool ok = memchr(out, '\0', len) != NULL && printable(out);
		for (size_t i = len; i < sizeof(out); i++)
			ok = ok && out[i] == 'Z';
		if (!ok)
			ck_abort_msg("iteration %d: bad output for outlen %zu",
			             iter, len);
	}
}
END_TEST

START_TEST(test_addr_format)
{
	struct conduit_addr a;
	char buf[64];
	memset(&a, 0, sizeof(a));
	a.family = CONDUIT_AF_INET;
	memcpy(a.bytes, "\x7f\0\0\x01", 4);
	ck_assert_ptr_eq(conduit_addr_format(&a, buf, sizeof(buf)), buf);
	ck_assert_str_eq(buf, "127.0.0.1");
	memset(buf, 'Z', sizeof(buf));
	conduit_addr_format(&a, buf, 4);
	ck_assert_str_eq(buf, "127");
	ck_assert_int_eq(buf[4], 'Z');

	memset(&a, 0, sizeof(a));
	a.family = CONDUIT_AF_INET6;
	a.bytes[15] = 1;
	ck_assert_str_eq(conduit_addr_format(&a, buf, sizeof(buf)), "::1");
	a.bytes[0] = 0xfe;
	a.bytes[1] = 0x80;
	a.scope = 3;
	ck_assert_str_eq(conduit_addr_format(&a, buf, sizeof(buf)),
	                 "fe80::1%3");
	memset(a.bytes, 0xff, 16);
	a.scope = 4294967295u;
	ck_assert_str_eq(conduit_addr_format(&a, buf, sizeof(buf)),
	                 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295");
	a.family = 0;
	ck_assert_str_eq(conduit_addr_format(&a, buf, sizeof(buf)), "?");
	ck_assert_str_eq(conduit_addr_format(NULL, buf, sizeof(buf)), "");
	ck_assert_ptr_null(conduit_addr_format(&a, NULL, 10));
	buf[0] = 'Z';
	conduit_addr_format(&a, buf, 0);
	ck_assert_int_eq(buf[0], 'Z');
}
END_TEST

/* ------------------------------------------------------------------ */
/* limits                                                              */

START_TEST(test_long_input)
{
	char err[1024];
	conduit_endpoint *ep = NULL;
	/* Exactly CD_URI_MAX bytes is fine (leading zeros in the port). */
	size_t n = CD_URI_MAX;
	char *u = malloc(100001);
	ck_assert_ptr_nonnull(u);
	memcpy(u, "tcp://h:", 8);
	memset(u + 8, '0', n - 10);
	memcpy(u + n - 2, "80", 3);
	ck_assert_uint_eq(strlen(u), CD_URI_MAX);
	ck_assert_int_eq(conduit_endpoint_parse(&ep, u, err, sizeof(err)),
	                 CONDUIT_OK);
	ck_assert_str_eq(conduit_endpoint_uri(ep), "tcp://h:80");
	conduit_endpoint_free(ep);
	/* One more is not. */
	memcpy(u + n - 2, "080", 4);
	ck_assert_int_eq(conduit_endpoint_parse(&ep, u, err, sizeof(err)),
	                 CONDUIT_ERR_URI);
	ck_assert_ptr_null(ep);
	ck_assert_ptr_nonnull(
	    strstr(err, "URI too long (8193 bytes, limit 8192)"));
	ck_assert_ptr_nonnull(strstr(err, "...: URI too long"));
	ck_assert_uint_le(strlen(err), MSG_LIMIT);
	/* Far more, and bytes the scanner would refuse: length comes first. */
	memset(u, '\x01', 100000);
	u[100000] = '\0';
	ck_assert_int_eq(conduit_endpoint_parse(&ep, u, err, sizeof(err)),
	                 CONDUIT_ERR_URI);
	ck_assert_ptr_nonnull(strstr(err, "(100000 bytes, limit 8192)"));
	ck_assert_uint_le(strlen(err), MSG_LIMIT);
	ck_assert(printable(err));
	free(u);

	/* Host names: 253 bytes fine (plus a trailing dot), 254 not. */
	char h[400];
	strcpy(h, "tcp://");
	for (int i = 0; i < 4; i++) {
		memset(h + strlen(h), 'a' + i, 63);
		h[6 + 64 * i + 63] = '\0';
		strcat(h, ".");
	}
	h[strlen(h) - 3] = '\0'; /* 63*4 + 3 dots - 2 = 253 */
	strcat(h, ":1");
	ep = parse_ok(h);
	ck_assert_uint_eq(strlen(conduit_endpoint_host(ep)), 253);
	check_roundtrip(ep, h);
	conduit_endpoint_free(ep);
	h[strlen(h) - 2] = '\0';
	strcat(h, ".:1");
	ep = parse_ok(h);
	conduit_endpoint_free(ep);
	h[strlen(h) - 3] = '\0';
	strcat(h, "x:1");
	ck_assert_int_eq(conduit_endpoint_parse(&ep, h, err, sizeof(err)),
	                 CONDUIT_ERR_HOST);
	ck_assert_ptr_nonnull(strstr(err, "host name is 254 bytes, limit 253"));
	ck_assert_uint_le(strlen(err), MSG_LIMIT);
}
END_TEST

static void path_case(const char *prefix, const char *unit, size_t count,
                      int want, const char *what)
{
	char u[1024], err[512];
	conduit_endpoint *ep = NULL;
	snprintf(u, sizeof(u), "%s", prefix);
	for (size_t i = 0; i < count; i++)
		strcat(u, unit);
	int rc = conduit_endpoint_parse(&ep, u, err, sizeof(err));
	ck_assert_msg(rc == want, "%s: %s (%s)", u, conduit_status_name(rc),
	              err);
	if (rc == CONDUIT_OK) {
		ck_assert_uint_eq(strlen(conduit_endpoint_path(ep)), SUN_MAX);
		check_roundtrip(ep, u);
		conduit_endpoint_free(ep);
		return;
	}
	char expect[128];
	snprintf(expect, sizeof(expect), "%s is %zu bytes, limit %zu", what,
	         (size_t)SUN_MAX + 1, (size_t)SUN_MAX);
	ck_assert_msg(strstr(err, expect) != NULL, "\"%s\" lacks \"%s\"", err,
	              expect);
	ck_assert_uint_le(strlen(err), MSG_LIMIT);
}

START_TEST(test_path_limits)
{
	const int OK = CONDUIT_OK, LONG = CONDUIT_ERR_PATH_TOO_LONG;
	path_case("unix:///", "a", SUN_MAX - 1, OK, "");
	path_case("unix:///", "a", SUN_MAX, LONG, "socket path");
	path_case("unix:", "a", SUN_MAX, OK, "");
	path_case("unix:", "a", SUN_MAX + 1, LONG, "socket path");
	path_case("unix:/", "%61", SUN_MAX - 1, OK, "");
	path_case("unix:/", "%61", SUN_MAX, LONG, "socket path");
	path_case("tls+unix:", "%20", SUN_MAX, OK, "");
	path_case("unix-abstract://", "a", SUN_MAX, OK, "");
	path_case("unix-abstract://", "a", SUN_MAX + 1, LONG,
	          "abstract socket name");
	path_case("unix-abstract://", "%3A", SUN_MAX, OK, "");
	path_case("unix-abstract://x", "/", SUN_MAX, LONG,
	          "abstract socket name");
}
END_TEST

START_TEST(test_control_chars)
{
	char u[64], err[512], want[64];
	conduit_endpoint *ep = NULL;
	for (int c = 1; c < 256; c++) {
		bool allowed = (c >= 'a' && c <= 'z') ||
		               (c >= 'A' && c <= 'Z') ||
		               (c >= '0' && c <= '9') ||
		               strchr("-._~!$&'()*+,;=:/?#[]@%", c) != NULL;
		if (allowed)
			continue;
		/* In a unix path every such byte is the same error... */
		snprintf(u, sizeof(u), "unix:///tmp/%cx", c);
		ck_assert_int_eq(
		    conduit_endpoint_parse(&ep, u, err, sizeof(err)),
		    CONDUIT_ERR_URI);
		snprintf(want, sizeof(want),
		         "invalid character 0x%02x at offset 12", c);
		ck_assert_msg(strstr(err, want) != NULL, "0x%02x: %s", c, err);
		ck_assert_msg(printable(err), "0x%02x: raw bytes in \"%s\"", c,
		              err);
		/* ...and in a tcp host, non-ASCII gets the punycode hint. */
		snprintf(u, sizeof(u), "tcp://ab%ccd:1", c);
		int rc = conduit_endpoint_parse(&ep, u, err, sizeof(err));
		ck_assert_int_eq(rc, c >= 0x80 ? CONDUIT_ERR_HOST
		                               : CONDUIT_ERR_URI);
		ck_assert(printable(err));
		ck_assert_ptr_null(ep);
	}
}
END_TEST

/* ------------------------------------------------------------------ */
/* fuzz                                                                */

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint32_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}

static void mutate(char *s, size_t cap)
{
	static const char *const tokens[] = {
	    "%",        "%25",       "%00",       "[",          "]",
	    ":",        "@",         "/",         "//",         "?",
	    "&",        "=",         "#",         "+",          "tls+",
	    "%3A",      "%2F",       "..",        ".",          "-",
	    "0x",       "99999",     "::",        "v1.",        "%C3%A9",
	    "\xc3\xa9", "nodelay=1", "mode=0600", "source=::1", "\x01",
	    " ",        "%2",
	};
	size_t n = strlen(s);
	switch (next() % 6) {
	case 0: /* replace a byte */
		if (n > 0)
			s[next() % n] = (char)(1 + next() % 255);
		break;
	case 1: /* insert a byte */
		if (n + 1 < cap) {
			size_t at = next() % (n + 1);
			memmove(s + at + 1, s + at, n - at + 1);
			s[at] = (char)(1 + next() % 255);
		}
		break;
	case 2: /* delete a byte */
		if (n > 0) {
			size_t at = next() % n;
			memmove(s + at, s + at + 1, n - at);
		}
		break;
	case 3: { /* insert a token */
		const char *t = tokens[next() % NELEM(tokens)];
		size_t tn = strlen(t);
		if (n + tn < cap) {
			size_t at = next() % (n + 1);
			memmove(s + at + tn, s + at, n - at + 1);
			memcpy(s + at, t, tn);
		}
		break;
	}
	case 4: /* truncate */
		s[next() % (n + 1)] = '\0';
		break;
	default: /* duplicate a piece */
		if (n > 0) {
			size_t at = next() % n, len = 1 + next() % (n - at);
			if (n + len < cap) {
				/* the piece stays at at and reappears
				 * at at + len */
				memmove(s + at + len, s + at, n - at + 1);
			}
		}
		break;
	}
}

static bool valid_failure(int rc)
{
	return rc == CONDUIT_ERR_URI || rc == CONDUIT_ERR_SCHEME ||
	       rc == CONDUIT_ERR_HOST || rc == CONDUIT_ERR_PORT ||
	       rc == CONDUIT_ERR_OPTION || rc == CONDUIT_ERR_PATH_TOO_LONG;
}

START_TEST(test_fuzz)
{
	char s[600], err[320];
	size_t parsed = 0, refused = 0;
	for (size_t i = 0; i < NELEM(goods); i++) {
		for (int iter = 0; iter < 300; iter++) {
			snprintf(s, sizeof(s), "%s", goods[i].uri);
			int rounds = 1 + (int)(next() % 4);
			for (int r = 0; r < rounds; r++)
				mutate(s, sizeof(s));
			size_t errlen = 1 + next() % sizeof(err);
			bool use_err = next() % 8 != 0;
			memset(err, 'Z', sizeof(err));
			conduit_endpoint *ep = (conduit_endpoint *)&ep;
			int rc = conduit_endpoint_parse(
			    &ep, s, use_err ? err : NULL, use_err ? errlen : 0);
			/* Plain tests first: a passing ck_assert() is a round
			 * trip to Check's parent, too slow by the thousand. */
			if (use_err && memchr(err, '\0', errlen) == NULL)
				ck_abort_msg("\"%s\": message not terminated",
				             s);
			if (rc != CONDUIT_OK) {
				if (!valid_failure(rc) || ep != NULL)
					ck_abort_msg("\"%s\": status %d", s,
					             rc);
				if (use_err && (!printable(err) ||
				                (errlen > 1 && err[0] == '\0')))
					ck_abort_msg(
					    "\"%s\": bad message \"%s\"", s,
					    err);
				refused++;
				continue;
			}
			if (ep == NULL)
				ck_abort_msg("\"%s\": OK without an endpoint",
				             s);
			conduit_endpoint *again = NULL;
			const char *canon = conduit_endpoint_uri(ep);
			if (conduit_endpoint_parse(&again, canon, NULL, 0) !=
			        CONDUIT_OK ||
			    !conduit_endpoint_equal(ep, again) ||
			    strcmp(conduit_endpoint_uri(again), canon) != 0)
				ck_abort_msg(
				    "\"%s\" printed as \"%s\" does not "
				    "round-trip",
				    s, canon);
			conduit_endpoint_free(again);
			conduit_endpoint_free(ep);
			parsed++;
			char red[40];
			cd_uri_redact(s, red, 1 + next() % sizeof(red));
		}
	}
	/* The mutations should exercise both outcomes. */
	ck_assert_uint_gt(parsed, 1000);
	ck_assert_uint_gt(refused, 1000);
}
END_TEST

int main(void)
{
	/* Check's test names are pointer variables: the table is built
	 * here, not as a constant at file scope. */
	const struct cd_test tests[] = {
	    CD_TEST(test_good_table, 0),
	    CD_TEST(test_bad_table, 0),
	    CD_TEST(test_dup_equal_free, 0),
	    CD_TEST(test_equality_pairs, 0),
	    CD_TEST(test_accessors, 0),
	    CD_TEST(test_bad_arguments, 0),
	    CD_TEST(test_errbuf_sizes, 0),
	    CD_TEST(test_password_never_shown, 0),
	    CD_TEST(test_redact, 0),
	    CD_TEST(test_redact_garbage, 0),
	    CD_TEST(test_addr_format, 0),
	    CD_TEST(test_long_input, 0),
	    CD_TEST(test_path_limits, 0),
	    CD_TEST(test_control_chars, 0),
	    CD_TEST(test_fuzz, 60),
	};
	return cd_run(cd_suite("uri", tests, NELEM(tests)));
}
