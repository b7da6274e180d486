# libopus, compiled from the pinned upstream source tree that scripts/fetch-libopus.mjs verifies and
# unpacks (never committed). We do not add_subdirectory() upstream's CMakeLists.txt because in 1.3.1
# it (a) adds -msse4.1/-mavx to *every* libopus file, so the compiler may emit AVX anywhere and the
# runtime CPU detection becomes a lie on older CPUs, (b) asks `git describe` of whatever repository
# surrounds it for its version, and (c) never enables NEON on aarch64. Instead we read upstream's own
# source lists (*.mk) and give each SIMD file exactly the ISA flag it needs, as upstream's autotools
# build does.
#
# Result: target `xz_libopus`, static, position independent, hidden visibility.

if(NOT XZ_LIBOPUS_DIR OR NOT EXISTS "${XZ_LIBOPUS_DIR}/include/opus.h")
  message(FATAL_ERROR
    "libopus source not found (XZ_LIBOPUS_DIR='${XZ_LIBOPUS_DIR}').\n"
    "Run `node scripts/fetch-libopus.mjs` (or `npm run build:native`, which does it for you).")
endif()
set(XZ_LIBOPUS_VERSION "1.3.1" CACHE STRING "libopus version of the pinned source tree")

# Reads `VAR = \` continuation lists from upstream's automake source lists.
function(xz_opus_sources out mkfile var)
  file(READ "${XZ_LIBOPUS_DIR}/${mkfile}" text)
  string(REGEX MATCH "${var} =[ \t]*(\\\\\n[^\\\n]*)*" block "${text}")
  if(NOT block)
    message(FATAL_ERROR "libopus: ${var} not found in ${mkfile}")
  endif()
  string(REGEX REPLACE "^${var} =" "" block "${block}")
  string(REGEX REPLACE "[ \t\r\n\\\\]+" ";" block "${block}")
  list(FILTER block EXCLUDE REGEX "^$")
  list(TRANSFORM block PREPEND "${XZ_LIBOPUS_DIR}/")
  set(${out} ${block} PARENT_SCOPE)
endfunction()

xz_opus_sources(opus_src opus_sources.mk OPUS_SOURCES)
xz_opus_sources(opus_float_src opus_sources.mk OPUS_SOURCES_FLOAT)
xz_opus_sources(celt_src celt_sources.mk CELT_SOURCES)
xz_opus_sources(silk_src silk_sources.mk SILK_SOURCES)
xz_opus_sources(silk_float_src silk_sources.mk SILK_SOURCES_FLOAT)

add_library(xz_libopus STATIC ${opus_src} ${opus_float_src} ${celt_src} ${silk_src} ${silk_float_src})
set_target_properties(xz_libopus PROPERTIES
  C_STANDARD 99
  POSITION_INDEPENDENT_CODE ON
  C_VISIBILITY_PRESET hidden)
target_include_directories(xz_libopus
  PUBLIC "${XZ_LIBOPUS_DIR}/include"
  PRIVATE "${XZ_LIBOPUS_DIR}" "${XZ_LIBOPUS_DIR}/celt" "${XZ_LIBOPUS_DIR}/silk" "${XZ_LIBOPUS_DIR}/silk/float")
# OPUS_EXPORT would force default visibility on the opus_* API; empty it so nothing of libopus is
# exported from the .node (the linker's --exclude-libs backs this up).
target_compile_definitions(xz_libopus
  PUBLIC OPUS_EXPORT=
  PRIVATE OPUS_BUILD VAR_ARRAYS HAVE_LRINTF HAVE_LRINT PACKAGE_VERSION="${XZ_LIBOPUS_VERSION}")
if(NOT MSVC)
  target_compile_options(xz_libopus PRIVATE -O3 -w)  # upstream code: its warnings are not ours to fix
endif()
include(CheckLibraryExists)
check_library_exists(m floor "" XZ_HAVE_LIBM)
if(XZ_HAVE_LIBM)
  target_link_libraries(xz_libopus PRIVATE m)
endif()

set(XZ_OPUS_SIMD "none")
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  # x86-64 always has SSE and SSE2: presume them. SSE4.1 (and AVX, which 1.3.1 maps onto its SSE4.1
  # kernels) are detected at run time with cpuid, and only the SSE4.1 files get -msse4.1.
  xz_opus_sources(celt_sse celt_sources.mk CELT_SOURCES_SSE)
  xz_opus_sources(celt_sse2 celt_sources.mk CELT_SOURCES_SSE2)
  xz_opus_sources(celt_sse41 celt_sources.mk CELT_SOURCES_SSE4_1)
  xz_opus_sources(silk_sse41 silk_sources.mk SILK_SOURCES_SSE4_1)
  target_sources(xz_libopus PRIVATE ${celt_sse} ${celt_sse2} ${celt_sse41} ${silk_sse41})
  if(NOT MSVC)
    set_source_files_properties(${celt_sse41} ${silk_sse41} PROPERTIES COMPILE_OPTIONS "-msse4.1")
  endif()
  target_compile_definitions(xz_libopus PRIVATE
    OPUS_HAVE_RTCD CPU_INFO_BY_C
    OPUS_X86_MAY_HAVE_SSE OPUS_X86_PRESUME_SSE
    OPUS_X86_MAY_HAVE_SSE2 OPUS_X86_PRESUME_SSE2
    OPUS_X86_MAY_HAVE_SSE4_1 OPUS_X86_MAY_HAVE_AVX)
  set(XZ_OPUS_SIMD "x86-64: SSE, SSE2 + runtime-detected SSE4.1, AVX")
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
  # Every AArch64 CPU has NEON, so presume it (no runtime detection needed).
  xz_opus_sources(celt_neon celt_sources.mk CELT_SOURCES_ARM_NEON_INTR)
  xz_opus_sources(silk_neon silk_sources.mk SILK_SOURCES_ARM_NEON_INTR)
  target_sources(xz_libopus PRIVATE ${celt_neon} ${silk_neon})
  target_include_directories(xz_libopus PRIVATE "${XZ_LIBOPUS_DIR}/silk/fixed")
  target_compile_definitions(xz_libopus PRIVATE
    OPUS_ARM_MAY_HAVE_NEON_INTR OPUS_ARM_PRESUME_NEON_INTR OPUS_ARM_PRESUME_NEON)
  set(XZ_OPUS_SIMD "aarch64: NEON")
endif()
message(STATUS "libopus ${XZ_LIBOPUS_VERSION} from ${XZ_LIBOPUS_DIR}; SIMD: ${XZ_OPUS_SIMD}")
