# Torch as an interface target, from the paths setup.py read off the installed torch.
# We do not use torch's own CMake package: it reads TORCH_CUDA_ARCH_LIST itself, looks for a
# CUDA toolkit even for a CPU-only build, and needs FindCUDA workarounds (see BUILD.md).
foreach(var YL_TORCH_INCLUDES YL_TORCH_LIBDIR YL_CXX11_ABI)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "${var} is not set: build through setup.py (pip install --no-build-isolation -e .)")
  endif()
endforeach()

add_library(yl_torch INTERFACE)
target_include_directories(yl_torch SYSTEM INTERFACE ${YL_TORCH_INCLUDES})
target_compile_definitions(yl_torch INTERFACE _GLIBCXX_USE_CXX11_ABI=${YL_CXX11_ABI})
foreach(lib c10 torch torch_cpu torch_python)
  find_library(YL_LIB_${lib} ${lib} PATHS ${YL_TORCH_LIBDIR} NO_DEFAULT_PATH REQUIRED)
  target_link_libraries(yl_torch INTERFACE ${YL_LIB_${lib}})
endforeach()

# at::parallel_for expands `#pragma omp parallel` in our own translation units. The symbols
# resolve at run time to the libgomp that torch has already loaded (same soname).
find_package(OpenMP REQUIRED COMPONENTS CXX)
target_link_libraries(yl_torch INTERFACE OpenMP::OpenMP_CXX)
