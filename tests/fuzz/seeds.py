#!/usr/bin/env python3
"""Write the seed corpus of the fuzz harnesses into corpus/NAME/.

The seeds are the shapes each harness should start from: URIs of every
transport and service, rules files with every directive, and Ethernet
frames that reach lwIP's ARP, IPv4, IPv6, ICMP and TCP code.  Run it again
after changing it; the files it writes are kept in the tree.
"""
import hashlib
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def put(harness, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(HERE, "corpus", harness)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


URIS = [
    "tcp://example.org:80", "tcp://[::1]:8080", "tcp://:0",
    "tcp://[fe80::1%25eth0]:22", "unix:///run/app.sock",
    "unix-abstract://name", "tls://host:443", "tls+tcp://h:1?alpn=h2,http/1.1",
    "tls+unix:///p?servername=x.test", "tls+vchan://7/echo",
    "vchan://7/echo?write-ring=65536", "vchan://logger/syslog",
    "https://example.org/x?y#z", "imaps://mail.example.org",
    "https://u:pw@h:8443/p?access_token=t#frag",
    "tcp://h:1?nodelay=0&keepalive=30&connect-to=127.0.0.1:2",
    "unix:///s?mode=0600", "tcp://127.0.0.1:1?key=/k&cert=/c&ca=/a",
    "https://a.xen/", "echo://db.xen/", "tcp://api.test:443",
    "fuzzsvc://h.test", "tcp://db.internal:80",
]

RULES = [
    "map db.internal unix:///run/db.sock\n",
    "map *.xen unix-abstract://xen-{label}-{scheme}\n",
    "map *.svc.example unix:///run/{prefix}.sock\n",
    "connect-to example.com:443 127.0.0.1:8443\nconnect-to *.cdn.test:* 127.0.0.2:\n",
    "service myproto 7000\nservice mysecure 7001 tls\n",
    "# comment\nmap a.test tcp://{host}:{port}\nmap b.test tls+tcp://[::1]:{port}?servername={host}\n",
]


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


PEER_MAC = bytes.fromhex("020000000001")
BCAST = b"\xff" * 6
A4 = bytes([10, 0, 0, 1])
B4 = bytes([10, 0, 0, 2])
A6 = bytes.fromhex("fd000000000000000000000000000001")
B6 = bytes.fromhex("fd000000000000000000000000000002")


def eth(dst, typ, payload):
    return dst + PEER_MAC + struct.pack("!H", typ) + payload


def arp_request():
    return eth(BCAST, 0x0806, struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
               + PEER_MAC + A4 + b"\0" * 6 + B4)


def ipv4(proto, payload):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64,
                    proto, 0, A4, B4)
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload


def tcp(src, dst, flags, seq, ack, pseudo, opts=b""):
    off = (20 + len(opts)) // 4
    t = struct.pack("!HHIIBBHHH", 40000, 7, seq, ack, off << 4, flags, 65535,
                    0, 0) + opts
    c = csum(pseudo(len(t)) + t)
    return t[:16] + struct.pack("!H", c) + t[18:]


def tcp4(flags, seq=1000, ack=0, opts=b""):
    def pseudo(n):
        return A4 + B4 + struct.pack("!BBH", 0, 6, n)
    return eth(BCAST, 0x0800, ipv4(6, tcp(A4, B4, flags, seq, ack, pseudo,
                                          opts)))


def icmp4_echo():
    body = struct.pack("!BBHHH", 8, 0, 0, 1, 1) + b"ping"
    body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
    return eth(BCAST, 0x0800, ipv4(1, body))


def ipv6(nh, payload):
    return struct.pack("!IHBB", 6 << 28, len(payload), nh, 255) + A6 + B6 + payload


def icmp6(typ, body):
    m = struct.pack("!BBH", typ, 0, 0) + body
    pseudo = A6 + B6 + struct.pack("!I3xB", len(m), 58)
    c = csum(pseudo + m)
    return m[:2] + struct.pack("!H", c) + m[4:]


def ns6():
    body = b"\0" * 4 + B6 + struct.pack("!BB", 1, 1) + PEER_MAC
    return eth(bytes.fromhex("3333ff000002"), 0x86DD, ipv6(58, icmp6(135, body)))


def tcp6(flags):
    def pseudo(n):
        return A6 + B6 + struct.pack("!I3xB", n, 6)
    return eth(bytes.fromhex("333300000002"), 0x86DD,
               ipv6(6, tcp(A6, B6, flags, 5000, 0, pseudo,
                           b"\x02\x04\x05\xb4")))


def framed(*frames):
    return b"".join(struct.pack("!H", len(f)) + f for f in frames)


def main():
    for u in URIS:
        put("uri", u)
        put("resolve", u)
    # fz_secret_uri: a shape byte, then head NUL tail.
    for shape in range(8):
        put("uri", bytes([shape]) + b"https\0h.test:1")
        put("resolve", bytes([shape]) + b"tcp\0db.internal:80")
    for r in RULES:
        put("rules", r)
    mss = b"\x02\x04\x05\xb4"
    put("lwip_frames", framed(arp_request()))
    put("lwip_frames", framed(arp_request(), tcp4(0x02, opts=mss)))
    put("lwip_frames", framed(arp_request(), tcp4(0x02, opts=mss),
                              tcp4(0x10, 1001, 1)))
    put("lwip_frames", framed(arp_request(), tcp4(0x04, 1000)))
    put("lwip_frames", framed(arp_request(), icmp4_echo()))
    put("lwip_frames", framed(ns6(), tcp6(0x02)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
