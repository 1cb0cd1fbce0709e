/*
 * lwipopts.h - conduit's lwIP configuration, the one every profile builds
 * lwIP with (cmake/Lwip.cmake compiles Debian's lwIP 2.1.3 source with it,
 * and lwip.c sees the same file, so the library and its users agree on
 * every size).
 *
 * The stack is polled: NO_SYS, no lwIP thread, no sockets or netconn API.
 * Its clock (sys_now) and random numbers (LWIP_RAND, the TCP initial
 * sequence numbers) come from conduit's platform contract, through
 * stubs/lwip_port.c.  The protocol settings follow those Debian's liblwip
 * was built with, so that TCP behaves as it did on that library: the same
 * MSS, windows, queue lengths and heap allocation.
 */
#ifndef CONDUIT_LWIPOPTS_H
#define CONDUIT_LWIPOPTS_H

#include <stdint.h>

/* No operating system under lwIP: the application drives it with
 * lwip_init(), input functions and sys_check_timeouts(), from one thread.
 * Nothing to protect against another thread or an interrupt. */
#define NO_SYS               1
#define SYS_LIGHTWEIGHT_PROT 0
#define LWIP_NETCONN         0
#define LWIP_SOCKET          0

/* Memory: the C library's allocator for the heap and for every pool, so
 * pcbs, segments and pbufs are limited by memory, not by counts fixed
 * here. */
#define MEM_LIBC_MALLOC 1
#define MEMP_MEM_MALLOC 1
#define MEM_USE_POOLS   0
#if defined(__LP64__)
#define MEM_ALIGNMENT 8
#else
#define MEM_ALIGNMENT 4
#endif

/* Protocols: Ethernet with ARP, IPv4 and IPv6, ICMP, TCP, UDP (for DNS). */
#define LWIP_ARP            1
#define LWIP_ETHERNET       1
#define LWIP_IPV4           1
#define LWIP_IPV6           1
#define LWIP_ICMP           1
#define LWIP_ICMP6          1
#define LWIP_IGMP           1
#define LWIP_IPV6_MLD       1
#define MEMP_NUM_MLD6_GROUP 16
#define LWIP_TCP            1
#define LWIP_UDP            1
#define LWIP_RAW            0
#define LWIP_DHCP           0
#define LWIP_AUTOIP         0
#define LWIP_IPV6_DHCP6     0
/* An endpoint, not a router: frames for another host are dropped. */
#define IP_FORWARD        0
#define LWIP_IPV6_FORWARD 0

/* No loopback netif and no loopback through lwIP: the backend refuses
 * destinations that would need it (a polled stack delivers nothing to
 * itself). */
#define LWIP_NETIF_LOOPBACK 0
#define LWIP_HAVE_LOOPIF    0

/* IPv6: a link-local address on every netif, SLAAC, up to six addresses
 * per netif (lwip.c walks LWIP_IPV6_NUM_ADDRESSES of them). */
#define LWIP_IPV6_NUM_ADDRESSES       6
#define LWIP_IPV6_DUP_DETECT_ATTEMPTS 1
#define LWIP_IPV6_SEND_ROUTER_SOLICIT 1
#define LWIP_IPV6_AUTOCONFIG          1
/* Reassembly keeps its bookkeeping in the fragment header, which is too
 * small for it where pointers have 64 bits: copy the header aside. */
#if defined(__LP64__)
#define IPV6_FRAG_COPYHEADER 1
#endif

/* ARP: keep a few packets per unresolved address. */
#define ARP_QUEUEING  1
#define ARP_QUEUE_LEN 10

/* TCP: a full Ethernet MSS, a 64 KiB window scaled by 2 on receive, a 64
 * KiB send buffer (lwip.c's send_room() and the flow-control tests are
 * written for these), keepalive available. */
#define TCP_MSS            1460
#define TCP_WND            0xFFFF
#define LWIP_WND_SCALE     1
#define TCP_RCV_SCALE      1
#define TCP_SND_BUF        TCP_WND
#define LWIP_TCP_KEEPALIVE 1
#define SO_REUSE           1

/* DNS: lwIP's resolver, with every LWIP_DNS_SECURE protection (random
 * query ids, one query per name at a time, random source ports). */
#define LWIP_DNS 1
#define LWIP_DNS_SECURE                                                        \
	(LWIP_DNS_SECURE_RAND_XID | LWIP_DNS_SECURE_NO_MULTIPLE_OUTSTANDING |  \
	 LWIP_DNS_SECURE_RAND_SRC_PORT)

/* Output: one pbuf per frame handed to the netif; checksums computed
 * while copying. */
#define LWIP_NETIF_TX_SINGLE_PBUF 1
#define LWIP_CHECKSUM_ON_COPY     1

/* Random local ports and sequence numbers, from the platform's entropy
 * (stubs/lwip_port.c). */
uint32_t conduit_lwip_rand(void);
uint32_t conduit_lwip_tcp_isn(const void *local_ip, uint16_t local_port,
                              const void *remote_ip, uint16_t remote_port);
#define LWIP_RAND()                        conduit_lwip_rand()
#define LWIP_RANDOMIZE_INITIAL_LOCAL_PORTS 1
#define LWIP_HOOK_TCP_ISN(local_ip, local_port, remote_ip, remote_port)        \
	conduit_lwip_tcp_isn((local_ip), (local_port), (remote_ip),            \
	                     (remote_port))

/* lwIP's statistics are not kept (conduit_lwip_stats() counts its own).
 * lwIP's internal assertions stay on, as in Debian's build (arch/cc.h). */
#define LWIP_STATS         0
#define LWIP_STATS_DISPLAY 0

#endif
