# The version lives in two places a reader looks for it: project(kcache
# VERSION ...) (the package version, the shared library's VERSION and
# SOVERSION, kcache.pc) and store/include/kcache/version.h (KC_VERSION_*,
# kc_version()). Configuring fails if they disagree, so they cannot drift.
file(STRINGS ${PROJECT_SOURCE_DIR}/store/include/kcache/version.h KC_VERSION_LINES
  REGEX "^#define KC_VERSION_(MAJOR|MINOR|PATCH) +[0-9]+$")
foreach(part MAJOR MINOR PATCH)
  set(KC_HEADER_VERSION_${part} "")
  foreach(line ${KC_VERSION_LINES})
    if(line MATCHES "^#define KC_VERSION_${part} +([0-9]+)$")
      set(KC_HEADER_VERSION_${part} ${CMAKE_MATCH_1})
    endif()
  endforeach()
endforeach()
set(KC_HEADER_VERSION
  "${KC_HEADER_VERSION_MAJOR}.${KC_HEADER_VERSION_MINOR}.${KC_HEADER_VERSION_PATCH}")
if(NOT KC_HEADER_VERSION STREQUAL PROJECT_VERSION)
  message(FATAL_ERROR "store/include/kcache/version.h says ${KC_HEADER_VERSION}, "
    "project(kcache VERSION ${PROJECT_VERSION}) in CMakeLists.txt: make them equal")
endif()
