# libkcache.so, the install rules, the CMake package and the pkg-config
# files. Included by the top-level CMakeLists.txt after the libraries'
# directories, so that it sees kcache_store and (if built) kcache_launch.
#
#   libkcache_store.a, libkcache_launch.a   static archives: CMake targets
#                                           kcache::store and kcache::launch,
#                                           pkg-config kcache-static
#   libkcache.so.0 (soname)                 the store and the launcher in one
#                                           shared library that exports only
#                                           the KC_API functions: CMake target
#                                           kcache::kcache, pkg-config kcache

option(KC_BUILD_SHARED "Build libkcache.so: the store and the launcher in one shared library" ON)

# Exported as kcache::store and kcache::launch, the names of the build
# tree's aliases (EXPORT_NAME, set here so that the libraries' own
# CMakeLists.txt need not know about packaging).
set_target_properties(kcache_store PROPERTIES EXPORT_NAME store)
if(TARGET kcache_launch)
  set_target_properties(kcache_launch PROPERTIES EXPORT_NAME launch)
endif()

if(KC_BUILD_SHARED)
  # The shared library has no code of its own: every object of the static
  # archives goes in (WHOLE_ARCHIVE), built with -fPIC and hidden
  # visibility, so that exactly the KC_API functions are exported.
  file(CONFIGURE OUTPUT ${CMAKE_CURRENT_BINARY_DIR}/kcache_shared.c
    CONTENT "/* libkcache.so: its code comes from the static archives. */\ntypedef int kc__shared_unit_t;\n")
  add_library(kcache SHARED ${CMAKE_CURRENT_BINARY_DIR}/kcache_shared.c)
  add_library(kcache::kcache ALIAS kcache)
  if(TARGET kcache_launch)
    # kcache_launch brings kcache_store as its dependency: that one is
    # linked whole too (naming it here as well would link it twice).
    target_link_libraries(kcache PRIVATE "$<LINK_LIBRARY:WHOLE_ARCHIVE,kcache_launch>")
    set_property(TARGET kcache PROPERTY LINK_LIBRARY_OVERRIDE_kcache_store WHOLE_ARCHIVE)
  else()
    target_link_libraries(kcache PRIVATE "$<LINK_LIBRARY:WHOLE_ARCHIVE,kcache_store>")
  endif()
  target_include_directories(kcache PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/store/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  if(TARGET kcache_launch)
    target_include_directories(kcache PUBLIC
      $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/launcher/include>)
  endif()
  set_target_properties(kcache PROPERTIES
    OUTPUT_NAME kcache
    VERSION ${PROJECT_VERSION}
    SOVERSION ${PROJECT_VERSION_MAJOR}
    C_VISIBILITY_PRESET hidden)
  # Every dependency must be linked in (the sanitizer runtimes are the
  # program's, so not with them).
  if(NOT KC_SANITIZE AND NOT KC_BUILD_FUZZ)
    target_link_options(kcache PRIVATE LINKER:--no-undefined)
  endif()
  install(TARGETS kcache EXPORT kcacheTargets
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

# ---- CMake package ------------------------------------------------------------
install(EXPORT kcacheTargets NAMESPACE kcache:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/kcache)
configure_package_config_file(cmake/kcacheConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/kcacheConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/kcache)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/kcacheConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/kcacheConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/kcacheConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/kcache)

# ---- pkg-config -----------------------------------------------------------------
# Relocatable: prefix is found from the .pc file's own place
# (${pcfiledir}), whatever CMAKE_INSTALL_LIBDIR is (lib, lib64,
# lib/x86_64-linux-gnu). An absolute LIBDIR or INCLUDEDIR is kept as it is.
set(KC_PC_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}" OR IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(KC_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
  set(KC_PC_LIBDIR "${CMAKE_INSTALL_FULL_LIBDIR}")
  set(KC_PC_INCLUDEDIR "${CMAKE_INSTALL_FULL_INCLUDEDIR}")
else()
  file(RELATIVE_PATH KC_PC_UP /kc_prefix/${KC_PC_DIR} /kc_prefix)
  string(REGEX REPLACE "/$" "" KC_PC_UP "${KC_PC_UP}")
  set(KC_PC_PREFIX "\${pcfiledir}/${KC_PC_UP}")
  set(KC_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
  set(KC_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
if(TARGET kcache_launch)
  set(KC_PC_STATIC_LIBS "-lkcache_launch -lkcache_store")
else()
  set(KC_PC_STATIC_LIBS "-lkcache_store")
endif()
set(KC_PC_REQUIRES "lmdb libzstd libxxhash jansson libsodium hiredis")
set(KC_PC_SYSLIBS "${CMAKE_DL_LIBS}")
if(KC_PC_SYSLIBS)
  set(KC_PC_SYSLIBS "-l${KC_PC_SYSLIBS} -lpthread")
else()
  set(KC_PC_SYSLIBS "-lpthread")
endif()
configure_file(cmake/kcache.pc.in ${CMAKE_CURRENT_BINARY_DIR}/kcache.pc @ONLY)
configure_file(cmake/kcache-static.pc.in ${CMAKE_CURRENT_BINARY_DIR}/kcache-static.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/kcache-static.pc DESTINATION ${KC_PC_DIR})
if(KC_BUILD_SHARED)
  install(FILES ${CMAKE_CURRENT_BINARY_DIR}/kcache.pc DESTINATION ${KC_PC_DIR})
endif()

# ---- tests of the package ---------------------------------------------------------
if(KC_BUILD_TESTS AND KC_BUILD_SHARED)
  # libkcache.so exports kc_ names only: no kc__ internal, nothing foreign.
  add_test(NAME check_exports
    COMMAND bash ${PROJECT_SOURCE_DIR}/scripts/check-exports.sh $<TARGET_FILE:kcache>)
  set_tests_properties(check_exports PROPERTIES LABELS lint TIMEOUT 60)
  # Install into a temporary prefix and build programs against it with
  # pkg-config, find_package and dlopen.
  set(KC_CONSUMER_FLAGS "")
  if(KC_SANITIZE)
    set(KC_CONSUMER_FLAGS "-fsanitize=${KC_SANITIZE}")
  endif()
  add_test(NAME install_package
    COMMAND bash ${PROJECT_SOURCE_DIR}/scripts/test-install.sh ${PROJECT_BINARY_DIR})
  set_tests_properties(install_package PROPERTIES LABELS install TIMEOUT 600
    ENVIRONMENT "KC_TEST_TMP=${PROJECT_BINARY_DIR}/tests/tmp;KC_CONSUMER_FLAGS=${KC_CONSUMER_FLAGS}")
endif()
