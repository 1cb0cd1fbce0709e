# DebianSource.cmake - dependencies compiled from Debian's source packages.
#
#   conduit_debian_source(<out_var> PACKAGE <name> SUITE <suite> VERSION <v>)
#
# Fetches the source package <name> of Debian suite <suite> (bookworm,
# trixie) with `apt-get source --download-only`, checks that its upstream
# version starts with <v>, unpacks it with `dpkg-source -x` (Debian's
# patches applied) and sets <out_var> to the unpacked tree.  The caller
# builds what it needs from there.
#
# Everything lands in CONDUIT_DEBIAN_SOURCE_DIR (default
# <build>/_deps/debian/<name>-<suite>/): the downloaded files in dl/, the
# tree in src/, and a stamp naming the version unpacked.  Once the stamp is
# there, configuring again neither downloads nor unpacks: the tree, and so
# the objects built from it, are reused.  Removing the folder (or the build
# tree) fetches it afresh.
#
# apt-get source needs deb-src entries for the suite; tools/setup adds them
# (deb-src only, never another suite's deb line).  Without them this fails
# at configure time, saying so.

set(CONDUIT_DEBIAN_SOURCE_DIR "${CMAKE_BINARY_DIR}/_deps/debian" CACHE PATH
    "Where Debian source packages are downloaded and unpacked")

function(_conduit_debian_source_fail package suite what detail)
  message(FATAL_ERROR
    "Debian source package ${package} (${suite}): ${what}\n"
    "${detail}\n"
    "Fix: run tools/setup (as root, or with sudo): it installs dpkg-dev and "
    "adds deb-src entries for bookworm and trixie under "
    "/etc/apt/sources.list.d/, then runs apt-get update.  Or leave the "
    "dependency out (-DCONDUIT_WITH_LWIP=OFF, -DCONDUIT_WITH_TLS=OFF) or "
    "use the installed mbedTLS (-DCONDUIT_MBEDTLS=system).")
endfunction()

function(conduit_debian_source out_var)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "" "PACKAGE;SUITE;VERSION" "")
  if(NOT ARG_PACKAGE OR NOT ARG_SUITE OR NOT ARG_VERSION)
    message(FATAL_ERROR "conduit_debian_source: PACKAGE, SUITE and VERSION are required")
  endif()
  set(root "${CONDUIT_DEBIAN_SOURCE_DIR}/${ARG_PACKAGE}-${ARG_SUITE}")
  set(src "${root}/src")
  set(stamp "${root}/unpacked")

  # Already unpacked: reuse it as it is.
  if(EXISTS "${stamp}" AND IS_DIRECTORY "${src}")
    file(READ "${stamp}" have)
    string(STRIP "${have}" have)
    string(FIND "${have}" "${ARG_VERSION}" at)
    if(at EQUAL 0)
      set(${out_var} "${src}" PARENT_SCOPE)
      return()
    endif()
    message(STATUS "${ARG_PACKAGE} (${ARG_SUITE}): ${have} unpacked, "
                   "${ARG_VERSION} wanted: fetching again")
  endif()

  find_program(CONDUIT_APT_GET apt-get)
  find_program(CONDUIT_DPKG_SOURCE dpkg-source)
  if(NOT CONDUIT_APT_GET)
    _conduit_debian_source_fail(${ARG_PACKAGE} ${ARG_SUITE}
      "apt-get not found" "The compiled-in dependencies come from Debian's archive.")
  endif()
  if(NOT CONDUIT_DPKG_SOURCE)
    _conduit_debian_source_fail(${ARG_PACKAGE} ${ARG_SUITE}
      "dpkg-source not found (package dpkg-dev)" "It unpacks the source package.")
  endif()

  message(STATUS "${ARG_PACKAGE} (${ARG_SUITE}): apt-get source into ${root}")
  file(REMOVE_RECURSE "${root}")
  file(MAKE_DIRECTORY "${root}/dl")
  # As root, apt cannot drop to its sandbox user in a folder that user
  # cannot write: download as the caller rather than warn about it.
  set(apt_opts -qq --download-only)
  execute_process(COMMAND id -u OUTPUT_VARIABLE uid OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(uid STREQUAL "0")
    list(APPEND apt_opts -o APT::Sandbox::User=root)
  endif()
  execute_process(
    COMMAND ${CONDUIT_APT_GET} source ${apt_opts} "${ARG_PACKAGE}/${ARG_SUITE}"
    WORKING_DIRECTORY "${root}/dl"
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    _conduit_debian_source_fail(${ARG_PACKAGE} ${ARG_SUITE}
      "apt-get source ${ARG_PACKAGE}/${ARG_SUITE} failed (${rc})"
      "${err}${out}Most often there is no deb-src entry for ${ARG_SUITE}.")
  endif()

  file(GLOB dsc "${root}/dl/*.dsc")
  list(LENGTH dsc n)
  if(NOT n EQUAL 1)
    _conduit_debian_source_fail(${ARG_PACKAGE} ${ARG_SUITE}
      "expected one .dsc file in ${root}/dl, found ${n}" "")
  endif()
  file(STRINGS "${dsc}" version REGEX "^Version: ")
  string(REGEX REPLACE "^Version: *" "" version "${version}")
  # The Debian version is [epoch:]upstream[-revision]; compare upstream.
  string(REGEX REPLACE "^[0-9]+:" "" upstream "${version}")
  string(FIND "${upstream}" "${ARG_VERSION}" at)
  if(NOT at EQUAL 0)
    _conduit_debian_source_fail(${ARG_PACKAGE} ${ARG_SUITE}
      "${ARG_SUITE} has version ${version}, ${ARG_VERSION} is expected"
      "The build is written for ${ARG_PACKAGE} ${ARG_VERSION}.")
  endif()

  # Into a temporary name first, so that an interrupted unpack is redone.
  execute_process(
    COMMAND ${CONDUIT_DPKG_SOURCE} -x "${dsc}" "${root}/src.tmp"
    WORKING_DIRECTORY "${root}"
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    _conduit_debian_source_fail(${ARG_PACKAGE} ${ARG_SUITE}
      "dpkg-source -x failed (${rc})" "${err}${out}")
  endif()
  file(RENAME "${root}/src.tmp" "${src}")
  # dpkg-source leaves a copy of the upstream tarball beside the tree;
  # dl/ has it already.
  file(GLOB copies "${root}/*.orig.tar.*")
  if(copies)
    file(REMOVE ${copies})
  endif()
  file(WRITE "${stamp}" "${upstream}\n")
  message(STATUS "${ARG_PACKAGE} (${ARG_SUITE}): ${version} unpacked")
  set(${out_var} "${src}" PARENT_SCOPE)
endfunction()
