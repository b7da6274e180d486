# CMake generated Testfile for 
# Source directory: /work/main
# Build directory: /work/main/build-native-tests
# 
# This file includes the relevant testing commands required for 
# testing this directory and lists subdirectories to be tested as well.
add_test(xz_native_tests "/work/main/build-native-tests/xz_native_tests")
set_tests_properties(xz_native_tests PROPERTIES  _BACKTRACE_TRIPLES "/work/main/CMakeLists.txt;90;add_test;/work/main/CMakeLists.txt;0;")
