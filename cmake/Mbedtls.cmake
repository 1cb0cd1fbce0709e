# Mbedtls.cmake - mbedTLS compiled in, from a Debian source package, with
# conduit's configuration (backends/tls/mbedtls_config_conduit.h).
#
#   conduit_mbedtls_from_debian(SUITE <suite> VERSION <version>)
#
# Builds the three static archives libmbedcrypto.a, libmbedx509.a and
# libmbedtls.a (targets mbedcrypto, mbedx509, mbedtls; position
# independent), kept apart from libconduit so that an application may link
# its own mbedTLS instead, from the file lists of the package's own
# library/CMakeLists.txt, and sets for backends/tls and tools/:
#   MBEDTLS_INCLUDE_DIR   the package's include/
#   MBEDTLS_LIBRARY, MBEDX509_LIBRARY, MBEDCRYPTO_LIBRARY   the targets
# Whatever links the targets (libconduit, and through it its users)
# compiles with MBEDTLS_USER_CONFIG_FILE set, so that every file sees the
# configuration the library was built with.
#
# The configuration: the package's default config.h, then conduit's file,
# which for the host profile adds what Debian's build turns on (the same
# features, threading, and so the same structure layouts as Debian's
# libmbedtls), and for the unikernel profile (CONDUIT_PLATFORM=unikernel)
# removes files, sockets, threads and the OS's entropy.

include(DebianSource)

function(conduit_mbedtls_from_debian)
  cmake_parse_arguments(PARSE_ARGV 0 ARG "" "SUITE;VERSION" "")
  conduit_debian_source(src PACKAGE mbedtls SUITE ${ARG_SUITE} VERSION ${ARG_VERSION})

  # The library's own lists: src_crypto, src_x509, src_tls.
  file(READ "${src}/library/CMakeLists.txt" lists)
  foreach(part crypto x509 tls)
    string(REGEX MATCH "set\\(src_${part}[ \t\r\n]([^)]*)\\)" m "${lists}")
    if(NOT m)
      message(FATAL_ERROR "mbedTLS ${ARG_VERSION}: no src_${part} list in "
                          "${src}/library/CMakeLists.txt")
    endif()
    string(REGEX REPLACE "[ \t\r\n]+" ";" names "${CMAKE_MATCH_1}")
    set(files_${part} "")
    foreach(n ${names})
      if(n MATCHES "\\.c$")
        list(APPEND files_${part} "${src}/library/${n}")
      endif()
    endforeach()
  endforeach()

  set(config "${PROJECT_SOURCE_DIR}/backends/tls/mbedtls_config_conduit.h")
  find_package(Threads REQUIRED)
  foreach(part crypto x509 tls)
    if(part STREQUAL "tls")
      set(t mbedtls)
    else()
      set(t mbed${part})
    endif()
    add_library(${t} STATIC ${files_${part}})
    set_target_properties(${t} PROPERTIES
      POSITION_INDEPENDENT_CODE ON
      C_STANDARD 99
      C_EXTENSIONS ON)
    # Debian's code: built alike in every build type (optimised, no
    # sanitizer, as Debian's libmbedtls that the tests used before), and
    # without conduit's warnings.
    set_property(TARGET ${t} PROPERTY COMPILE_OPTIONS -O2 -w)
    target_include_directories(${t} SYSTEM PUBLIC "${src}/include")
    target_include_directories(${t} PRIVATE "${src}/library")
    target_compile_definitions(${t} PUBLIC "MBEDTLS_USER_CONFIG_FILE=\"${config}\"")
    if(CONDUIT_PLATFORM STREQUAL "unikernel")
      target_compile_definitions(${t} PUBLIC CONDUIT_MBEDTLS_UNIKERNEL)
    endif()
  endforeach()
  # Order matters for static linking: tls needs x509 needs crypto.
  target_link_libraries(mbedx509 PUBLIC mbedcrypto)
  target_link_libraries(mbedtls PUBLIC mbedx509)
  if(NOT CONDUIT_PLATFORM STREQUAL "unikernel")
    target_link_libraries(mbedcrypto PUBLIC Threads::Threads)
  endif()

  set(MBEDTLS_INCLUDE_DIR "${src}/include" PARENT_SCOPE)
  set(MBEDTLS_LIBRARY mbedtls PARENT_SCOPE)
  set(MBEDX509_LIBRARY mbedx509 PARENT_SCOPE)
  set(MBEDCRYPTO_LIBRARY mbedcrypto PARENT_SCOPE)
endfunction()
