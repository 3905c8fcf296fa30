# CUDA language and the yl_cuda target. CMAKE_CUDA_COMPILER, CUDAToolkit_ROOT and
# CMAKE_CUDA_ARCHITECTURES (from TORCH_CUDA_ARCH_LIST) come from setup.py; no GPU is queried.
set(CMAKE_CUDA_STANDARD 20)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
message(STATUS "yilightning: CUDA ${CUDAToolkit_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES}")

add_library(yl_cuda INTERFACE)
target_compile_definitions(yl_cuda INTERFACE YL_WITH_CUDA=1)
target_include_directories(yl_cuda SYSTEM INTERFACE ${YL_CUDA_EXTRA_INCLUDES})
if(YL_CUTLASS_INCLUDE)
  target_include_directories(yl_cuda SYSTEM INTERFACE ${YL_CUTLASS_INCLUDE})
  target_compile_definitions(yl_cuda INTERFACE YL_HAVE_CUTLASS=1)
endif()
foreach(lib c10_cuda torch_cuda)
  find_library(YL_LIB_${lib} ${lib} PATHS ${YL_TORCH_LIBDIR} NO_DEFAULT_PATH REQUIRED)
  target_link_libraries(yl_cuda INTERFACE ${YL_LIB_${lib}})
endforeach()
target_link_libraries(yl_cuda INTERFACE CUDA::cudart)
# c10::Half/BFloat16 bring their own conversions; CUDA's implicit ones would be ambiguous.
target_compile_options(yl_cuda INTERFACE $<$<COMPILE_LANGUAGE:CUDA>:
  -O3 --expt-relaxed-constexpr --expt-extended-lambda -lineinfo
  -D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__
  -D__CUDA_NO_BFLOAT16_CONVERSIONS__ -D__CUDA_NO_HALF2_OPERATORS__>)
