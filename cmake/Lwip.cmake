# Lwip.cmake - lwIP 2.1.3 compiled in, from Debian 12's source package
# "lwip" (the version of Debian's liblwip), with conduit's own
# configuration (backends/lwip/lwipopts.h and arch/cc.h: NO_SYS, DNS,
# keepalive, IPv4 and IPv6).
#
# Only what a polled stack on Ethernet needs is compiled: the core, IPv4
# and IPv6, TCP, UDP, DNS, ARP and Ethernet.  Not the sockets or netconn
# APIs, not Debian's unix port (its threads and sys_arch), not the apps.
# The platform underneath (sys_now, random numbers) is stubs/lwip_port.c
# over conduit's platform contract.
#
# Result: the static archive liblwip.a (target conduit_lwip, position
# independent so that a shared libconduit can take it), kept apart from
# libconduit so that an application may link its own lwIP instead, and
# for the files that use lwIP's API (lwip.c, the benchmark):
#   LWIP_INCLUDE_DIRS     lwIP's headers and conduit's configuration
#   LWIP_ISYSTEM          the same as -isystem options
#   LWIP_LINK_LIBRARIES   what to link (the archive)

include(DebianSource)
conduit_debian_source(LWIP_SOURCE_DIR PACKAGE lwip SUITE bookworm VERSION 2.1.3)

set(LWIP_CONFIG_DIR "${PROJECT_SOURCE_DIR}/backends/lwip")
set(LWIP_INCLUDE_DIRS "${LWIP_SOURCE_DIR}/src/include" "${LWIP_CONFIG_DIR}")

set(_lwip_files
  core/init.c core/def.c core/dns.c core/inet_chksum.c core/ip.c core/mem.c
  core/memp.c core/netif.c core/pbuf.c core/stats.c core/sys.c core/tcp.c
  core/tcp_in.c core/tcp_out.c core/timeouts.c core/udp.c
  core/ipv4/etharp.c core/ipv4/icmp.c core/ipv4/igmp.c core/ipv4/ip4.c
  core/ipv4/ip4_addr.c core/ipv4/ip4_frag.c
  core/ipv6/ethip6.c core/ipv6/icmp6.c core/ipv6/inet6.c core/ipv6/ip6.c
  core/ipv6/ip6_addr.c core/ipv6/ip6_frag.c core/ipv6/mld6.c core/ipv6/nd6.c
  netif/ethernet.c)
set(_lwip_sources "${PROJECT_SOURCE_DIR}/stubs/lwip_port.c")
foreach(f ${_lwip_files})
  if(NOT EXISTS "${LWIP_SOURCE_DIR}/src/${f}")
    message(FATAL_ERROR "lwIP source ${LWIP_SOURCE_DIR}/src/${f} is missing: "
                        "remove ${LWIP_SOURCE_DIR}/.. to fetch it again")
  endif()
  list(APPEND _lwip_sources "${LWIP_SOURCE_DIR}/src/${f}")
endforeach()

# lwIP's files are Debian's code, not ours: no warnings, and optimised in
# every build type (a Debug build tests conduit, not lwIP).  They keep the
# sanitizers of a sanitizer build, so that a pbuf overrun caused by the
# backend is caught where it happens.  The port file is ours and builds
# like the rest of conduit.
set_source_files_properties(${_lwip_sources} PROPERTIES COMPILE_OPTIONS "-w;-O2")
set_source_files_properties("${PROJECT_SOURCE_DIR}/stubs/lwip_port.c"
  PROPERTIES COMPILE_OPTIONS "")
add_library(conduit_lwip STATIC ${_lwip_sources})
set_target_properties(conduit_lwip PROPERTIES
  OUTPUT_NAME lwip
  POSITION_INDEPENDENT_CODE ON)
target_include_directories(conduit_lwip PRIVATE ${LWIP_INCLUDE_DIRS}
  "${PROJECT_SOURCE_DIR}/stubs/include")

set(LWIP_ISYSTEM "")
foreach(dir ${LWIP_INCLUDE_DIRS})
  list(APPEND LWIP_ISYSTEM "-isystem" "${dir}")
endforeach()
set(LWIP_LINK_LIBRARIES conduit_lwip)
