# libopus, compiled from the pinned upstream source tree that scripts/fetch-libopus.mjs verifies and
# unpacks (never committed). We do not add_subdirectory() upstream's CMakeLists.txt: it asks
# `git describe` of whatever repository surrounds it for its version, installs and exports targets,
# and its options would have to be forced from outside one by one (a wrong default such as
# OPUS_X86_PRESUME_AVX2 or OPUS_DRED would silently change what the addon is). Instead we read
# upstream's own source lists (*.mk, the lists its CMake and autotools builds read too) and give
# each SIMD file exactly the ISA flags upstream gives it, so the compiler can emit SSE4.1 or AVX2
# instructions only in the kernels that libopus calls after cpuid said the CPU has them.
#
# Configuration (float API, as before):
#   - x86-64: SSE and SSE2 presumed (every x86-64 CPU has them, upstream presumes them too);
#     SSE4.1 and AVX2 (+FMA) kernels compiled with per-file flags and chosen at run time
#     (OPUS_HAVE_RTCD, cpuid). Never OPUS_X86_PRESUME_SSE4_1/AVX2: the binary must run on CPUs
#     without them.
#   - aarch64: NEON intrinsics, presumed (AArch64 mandates Advanced SIMD), as upstream does.
#   - Deep PLC, DRED and OSCE (dnn/) are off: they need model weights (several MB) that the source
#     tree we fetch does not carry, and the xiaozhi protocol does not negotiate DRED anyway.
#
# Result: target `xz_libopus`, static, position independent, hidden visibility; XZ_OPUS_SIMD (a
# one-line summary) and XZ_OPUS_SIMD_COMPILED (list of ISA extensions with kernels in the build)
# for the build-info code.

if(NOT XZ_LIBOPUS_DIR OR NOT EXISTS "${XZ_LIBOPUS_DIR}/include/opus.h")
  message(FATAL_ERROR
    "libopus source not found (XZ_LIBOPUS_DIR='${XZ_LIBOPUS_DIR}').\n"
    "Run `node scripts/fetch-libopus.mjs` (or `npm run build:native`, which does it for you).")
endif()
# A plain variable, not a cache entry: it is a fact of the pinned tree, and a cached value would
# survive in build directories configured for an older pin.
set(XZ_LIBOPUS_VERSION "1.5.2")

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
  PRIVATE "${XZ_LIBOPUS_DIR}" "${XZ_LIBOPUS_DIR}/celt" "${XZ_LIBOPUS_DIR}/silk" "${XZ_LIBOPUS_DIR}/silk/float"
          "${XZ_LIBOPUS_DIR}/dnn")  # headers only (upstream includes it unconditionally); no dnn/ code
# OPUS_EXPORT would force default visibility on the opus_* API; empty it so nothing of libopus is
# exported from the .node (the linker's --exclude-libs backs this up). DISABLE_DEBUG_FLOAT is
# upstream's default (dnn debug code). ENABLE_DEEP_PLC / ENABLE_DRED / ENABLE_OSCE stay undefined.
target_compile_definitions(xz_libopus
  PUBLIC OPUS_EXPORT=
  PRIVATE OPUS_BUILD VAR_ARRAYS HAVE_LRINTF HAVE_LRINT DISABLE_DEBUG_FLOAT
          PACKAGE_VERSION="${XZ_LIBOPUS_VERSION}")
if(NOT MSVC)
  target_compile_options(xz_libopus PRIVATE -O3 -w)  # upstream code: its warnings are not ours to fix
endif()
include(CheckLibraryExists)
check_library_exists(m floor "" XZ_HAVE_LIBM)
if(XZ_HAVE_LIBM)
  target_link_libraries(xz_libopus PRIVATE m)
endif()

# Per-file ISA flags. COMPILE_OPTIONS (a list) rather than upstream's COMPILE_FLAGS string.
function(xz_opus_isa_files flags)
  if(NOT MSVC OR flags MATCHES "^/")
    set_source_files_properties(${ARGN} PROPERTIES COMPILE_OPTIONS "${flags}")
  endif()
endfunction()

set(XZ_OPUS_SIMD "none")
set(XZ_OPUS_SIMD_COMPILED "")
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  xz_opus_sources(celt_rtcd celt_sources.mk CELT_SOURCES_X86_RTCD)
  xz_opus_sources(silk_rtcd silk_sources.mk SILK_SOURCES_X86_RTCD)
  xz_opus_sources(celt_sse celt_sources.mk CELT_SOURCES_SSE)
  xz_opus_sources(celt_sse2 celt_sources.mk CELT_SOURCES_SSE2)
  xz_opus_sources(celt_sse41 celt_sources.mk CELT_SOURCES_SSE4_1)
  xz_opus_sources(silk_sse41 silk_sources.mk SILK_SOURCES_SSE4_1)
  xz_opus_sources(celt_avx2 celt_sources.mk CELT_SOURCES_AVX2)
  xz_opus_sources(silk_avx2 silk_sources.mk SILK_SOURCES_AVX2)
  xz_opus_sources(silk_float_avx2 silk_sources.mk SILK_SOURCES_FLOAT_AVX2)
  # (SILK_SOURCES_FIXED_SSE4_1 belongs to the fixed-point build, which this is not.)
  target_sources(xz_libopus PRIVATE ${celt_rtcd} ${silk_rtcd} ${celt_sse} ${celt_sse2}
    ${celt_sse41} ${silk_sse41} ${celt_avx2} ${silk_avx2} ${silk_float_avx2})
  # -msse/-msse2 are x86-64 defaults; spelled out as upstream does so the files say what they need.
  xz_opus_isa_files("-msse" ${celt_sse})
  xz_opus_isa_files("-msse2" ${celt_sse2})
  xz_opus_isa_files("-msse4.1" ${celt_sse41} ${silk_sse41})
  if(MSVC)
    xz_opus_isa_files("/arch:AVX2" ${celt_avx2} ${silk_avx2} ${silk_float_avx2})
  else()
    xz_opus_isa_files("-mavx;-mavx2;-mfma" ${celt_avx2} ${silk_avx2} ${silk_float_avx2})
  endif()

  # How x86cpu.c reads cpuid: <cpuid.h>'s __get_cpuid_count when the compiler has it (GCC, Clang),
  # else inline asm; upstream probes the same two ways with these very files. MSVC uses __cpuid.
  if(NOT MSVC)
    include(CheckCSourceCompiles)
    file(READ "${XZ_LIBOPUS_DIR}/cmake/cpu_info_by_c.c" xz_probe)
    check_c_source_compiles("${xz_probe}" XZ_OPUS_CPU_INFO_BY_C)
    file(READ "${XZ_LIBOPUS_DIR}/cmake/cpu_info_by_asm.c" xz_probe)
    check_c_source_compiles("${xz_probe}" XZ_OPUS_CPU_INFO_BY_ASM)
    if(XZ_OPUS_CPU_INFO_BY_C)
      target_compile_definitions(xz_libopus PRIVATE CPU_INFO_BY_C)
    elseif(XZ_OPUS_CPU_INFO_BY_ASM)
      target_compile_definitions(xz_libopus PRIVATE CPU_INFO_BY_ASM)
    else()
      message(FATAL_ERROR "libopus: no way to read cpuid with this compiler (needed for runtime CPU detection)")
    endif()
  endif()
  target_compile_definitions(xz_libopus PRIVATE
    OPUS_HAVE_RTCD
    OPUS_X86_MAY_HAVE_SSE OPUS_X86_PRESUME_SSE
    OPUS_X86_MAY_HAVE_SSE2 OPUS_X86_PRESUME_SSE2
    OPUS_X86_MAY_HAVE_SSE4_1
    OPUS_X86_MAY_HAVE_AVX2)
  set(XZ_OPUS_SIMD "x86-64: SSE, SSE2 + runtime-detected SSE4.1, AVX2 (with FMA)")
  set(XZ_OPUS_SIMD_COMPILED "sse,sse2,sse4.1,avx2")
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
  # Upstream's CMake on aarch64: NEON intrinsics presumed (every AArch64 CPU has Advanced SIMD), with
  # its RTCD tables built as well; presumed NEON makes every call direct, so nothing is detected.
  # No .s assembly (that is the 32-bit ARM fixed-point path) and no NE10.
  xz_opus_sources(celt_arm_rtcd celt_sources.mk CELT_SOURCES_ARM_RTCD)
  xz_opus_sources(silk_arm_rtcd silk_sources.mk SILK_SOURCES_ARM_RTCD)
  xz_opus_sources(celt_neon celt_sources.mk CELT_SOURCES_ARM_NEON_INTR)
  xz_opus_sources(silk_neon silk_sources.mk SILK_SOURCES_ARM_NEON_INTR)
  target_sources(xz_libopus PRIVATE ${celt_arm_rtcd} ${silk_arm_rtcd} ${celt_neon} ${silk_neon})
  target_include_directories(xz_libopus PRIVATE "${XZ_LIBOPUS_DIR}/silk/fixed")  # silk/arm needs main_FIX.h
  target_compile_definitions(xz_libopus PRIVATE
    OPUS_HAVE_RTCD
    OPUS_ARM_MAY_HAVE_NEON OPUS_ARM_MAY_HAVE_NEON_INTR
    OPUS_ARM_PRESUME_NEON OPUS_ARM_PRESUME_NEON_INTR)
  set(XZ_OPUS_SIMD "aarch64: NEON")
  set(XZ_OPUS_SIMD_COMPILED "neon")
endif()
message(STATUS "libopus ${XZ_LIBOPUS_VERSION} from ${XZ_LIBOPUS_DIR}; SIMD: ${XZ_OPUS_SIMD}")
