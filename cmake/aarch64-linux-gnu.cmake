# CMake toolchain file: cross-compile for linux-arm64 with Debian's aarch64 cross toolchain
# (packages gcc-aarch64-linux-gnu and g++-aarch64-linux-gnu: the compiler plus the target's glibc and
# libstdc++ under /usr/aarch64-linux-gnu). Used by `node scripts/build-native.mjs --arch arm64`
# (the prebuilt addon) and by the arm64 test tier (test/arm64.test.ts: the GoogleTest suite).
#
# XZ_ARM64_ROOT (optional): a Debian arm64 root (scripts/arm64-root.mjs) that holds the target
# libraries the native tests link, libgtest and libcrypto; find_package() looks only there.
# The addon itself links nothing from it: it needs only the cross toolchain.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

# try_compile() projects (libopus's feature checks) re-read this file and need the same root.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES XZ_ARM64_ROOT)

if(XZ_ARM64_ROOT)
  set(CMAKE_FIND_ROOT_PATH "${XZ_ARM64_ROOT}")
  # Run executables under qemu-user with the root's libraries (add_test, try_run).
  set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L "${XZ_ARM64_ROOT}")
endif()
# Programs (ninja, the compiler) from the host; libraries, headers and packages only from the root
# (or the toolchain's own directories), never the host's x86-64 ones.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
