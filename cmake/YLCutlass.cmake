# CUTLASS/CuTe headers (header-only): from the nvidia-cutlass wheel or CUTLASS_DIR, found by
# setup.py and passed as YL_CUTLASS_INCLUDE. Sets YL_CUTLASS_VERSION ("" when absent).
set(YL_CUTLASS_VERSION "")
if(YL_CUTLASS_INCLUDE)
  file(STRINGS "${YL_CUTLASS_INCLUDE}/cutlass/version.h" _lines REGEX "#define CUTLASS_(MAJOR|MINOR|PATCH) ")
  foreach(part MAJOR MINOR PATCH)
    string(REGEX MATCH "CUTLASS_${part} ([0-9]+)" _m "${_lines}")
    list(APPEND _version "${CMAKE_MATCH_1}")
  endforeach()
  list(JOIN _version "." YL_CUTLASS_VERSION)
  message(STATUS "yilightning: CUTLASS ${YL_CUTLASS_VERSION} at ${YL_CUTLASS_INCLUDE}")
endif()
