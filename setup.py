"""Build driver: setuptools hands the one extension, ``yilightning._C``, to CMake + ninja.

Environment knobs (all optional):
  YL_CUDA=0|1               0: CPU kernels only. 1: CUDA kernels are required (fail if they
                            cannot be built). Unset: build them when torch is a CUDA build and
                            nvcc is found.
  TORCH_CUDA_ARCH_LIST      target GPUs, default "8.0;9.0a" (append "+PTX" for forward
                            compatibility, e.g. "8.0;9.0a+PTX"). The build never queries a GPU.
  CUDA_HOME / CUDA_PATH     CUDA toolkit root (the folder whose bin/ holds the real nvcc).
  CUTLASS_DIR               a CUTLASS checkout; default: the `nvidia-cutlass` wheel's headers.
  MAX_JOBS                  parallel compile jobs; default: capped by cores and memory.
  YL_BUILD_TYPE             CMake build type, default Release.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
DEFAULT_ARCHS = "8.0;9.0a"
GIB_PER_JOB = 3  # nvcc on CUTLASS templates peaks near 2-3 GiB per job


def _env_flag(name: str) -> bool | None:
    value = os.environ.get(name, "").strip().lower()
    if value in ("", "auto"):
        return None
    if value in ("1", "true", "on", "yes"):
        return True
    if value in ("0", "false", "off", "no"):
        return False
    raise SystemExit(f"{name}={value!r}: use 0, 1 or leave it unset")


def find_cuda_home() -> Path | None:
    """The toolkit root that holds the real nvcc and the CUDA headers.

    The `nvcc` on PATH may be a wrapper script (here /usr/local/bin/nvcc); its prefix has no
    headers or libraries, so a candidate counts only if it has bin/nvcc and include/cuda_runtime.h.
    """
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(str(Path(nvcc).resolve().parent.parent))
    for cand in candidates:
        if cand and (Path(cand) / "bin" / "nvcc").exists() and (Path(cand) / "include" / "cuda_runtime.h").exists():
            return Path(cand)
    return None


def find_cutlass() -> Path | None:
    if os.environ.get("CUTLASS_DIR"):
        root = Path(os.environ["CUTLASS_DIR"])
        include = root / "include" if (root / "include" / "cutlass").exists() else root
        if not (include / "cutlass" / "version.h").exists():
            raise SystemExit(f"CUTLASS_DIR={root}: no include/cutlass/version.h there")
        return include
    spec = importlib.util.find_spec("cutlass_library")
    if spec and spec.origin:
        include = Path(spec.origin).parent / "source" / "include"
        if (include / "cutlass" / "version.h").exists():
            return include
    return None


def cuda_arch_flags(arch_list: str) -> str:
    """'8.0;9.0a+PTX' -> '80-real;90a-real;90a-virtual' (CMake CUDA_ARCHITECTURES syntax)."""
    out = []
    for item in arch_list.replace(",", ";").replace(" ", ";").split(";"):
        if not item:
            continue
        ptx = item.endswith("+PTX")
        arch = item.removesuffix("+PTX").replace(".", "")
        if not arch[:2].isdigit():
            raise SystemExit(f"TORCH_CUDA_ARCH_LIST entry {item!r} is not like '8.0' or '9.0a'")
        out.append(f"{arch}-real")
        if ptx:
            out.append(f"{arch}-virtual")
    if not out:
        raise SystemExit("TORCH_CUDA_ARCH_LIST is empty; use e.g. '8.0;9.0a'")
    return ";".join(out)


def default_jobs() -> int:
    if os.environ.get("MAX_JOBS"):
        return max(1, int(os.environ["MAX_JOBS"]))
    cores = os.cpu_count() or 1
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gib = 8
    return max(1, min(cores, int(mem_gib // GIB_PER_JOB)))


def _tool(name: str) -> str | None:
    """cmake/ninja from their PyPI wheels (pinned in constraints.txt) before the ones on PATH:
    the system cmake may be older than 3.26, and a venv's bin/ is not on PATH under pip."""
    try:
        module = importlib.import_module(name)
        path = Path(getattr(module, "CMAKE_BIN_DIR", None) or getattr(module, "BIN_DIR")) / name
        if path.exists():
            return str(path)
    except (ImportError, AttributeError):
        pass
    return shutil.which(name)


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        import torch
        from torch.utils import cpp_extension

        want_cuda = _env_flag("YL_CUDA")
        cuda_home = find_cuda_home()
        reasons = []
        if torch.version.cuda is None:
            reasons.append(f"torch {torch.__version__} is a CPU-only build")
        if cuda_home is None:
            reasons.append("no CUDA toolkit found (set CUDA_HOME to the folder whose bin/ holds nvcc)")
        with_cuda = want_cuda is not False and not reasons
        if want_cuda and not with_cuda:
            raise SystemExit("YL_CUDA=1 but the CUDA kernels cannot be built: " + "; ".join(reasons))
        if want_cuda is None and not with_cuda:
            print("yilightning: building CPU kernels only: " + "; ".join(reasons), file=sys.stderr)

        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        # A fixed folder (not pip's temporary one) so that rebuilding an editable install is
        # incremental: only changed sources recompile.
        build_dir = Path(os.environ.get("YL_BUILD_DIR", ROOT / "build" / f"cmake-py{sys.version_info[0]}{sys.version_info[1]}"))
        build_dir.mkdir(parents=True, exist_ok=True)
        torch_dir = Path(torch.__file__).parent
        cutlass = find_cutlass()
        args = [
            f"-DCMAKE_BUILD_TYPE={os.environ.get('YL_BUILD_TYPE', 'Release')}",
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
            f"-DPython3_EXECUTABLE={sys.executable}",
            f"-DYL_EXT_SUFFIX={sysconfig.get_config_var('EXT_SUFFIX')}",
            f"-DYL_TORCH_INCLUDES={';'.join(cpp_extension.include_paths())}",
            f"-DYL_TORCH_LIBDIR={torch_dir / 'lib'}",
            f"-DYL_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
            f"-DYL_TORCH_VERSION={torch.__version__}",
            f"-DYL_WITH_CUDA={'ON' if with_cuda else 'OFF'}",
            f"-DYL_VERSION={self.distribution.get_version()}",
        ]
        ninja = _tool("ninja")
        if ninja:
            args += ["-GNinja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
        if with_cuda:
            arch_list = os.environ.get("TORCH_CUDA_ARCH_LIST") or DEFAULT_ARCHS
            # cuBLAS/cuSPARSE headers that ATen's CUDA headers include ship in the nvidia wheels.
            wheel_includes = [str(p) for p in (torch_dir.parent / "nvidia").glob("cu[0-9]*/include")]
            args += [
                f"-DCMAKE_CUDA_COMPILER={cuda_home / 'bin' / 'nvcc'}",
                f"-DCUDAToolkit_ROOT={cuda_home}",
                f"-DCMAKE_CUDA_ARCHITECTURES={cuda_arch_flags(arch_list)}",
                f"-DYL_CUDA_ARCH_LIST={arch_list}",
                f"-DYL_CUDA_EXTRA_INCLUDES={';'.join(wheel_includes)}",
            ]
        if cutlass is not None:
            args.append(f"-DYL_CUTLASS_INCLUDE={cutlass}")
        cmake = _tool("cmake")
        if cmake is None:
            raise SystemExit("cmake >= 3.26 not found: pip install cmake")
        subprocess.run([cmake, "-S", str(ROOT), "-B", str(build_dir), *args], check=True)
        subprocess.run([cmake, "--build", str(build_dir), "--parallel", str(default_jobs())], check=True)


setup(
    ext_modules=[Extension("yilightning._C", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
)
