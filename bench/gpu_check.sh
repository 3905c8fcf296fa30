#!/usr/bin/env bash
# The GPU check, for the device tool's H100/H200 machines: build the CUDA kernels there, run the
# CUDA tests, then the GPU benchmarks. Meant to finish in < 8 minutes.
#
# Those machines reach no package registry, so it builds against the Python and torch installed
# (PYTHON; default .venv/bin/python where `make setup` made one, else python3: on the device,
# torch 2.11 + CUDA 13.0 when last seen, with transformers, pytest, pytest-benchmark, cmake and
# ninja). Two wheels travel in .whl/ (git-ignored), installed into /tmp/yl-site, first on
# PYTHONPATH: nvidia-cutlass (the CUTLASS headers) and setuptools (pyproject.toml's license
# string needs setuptools >= 77; an older one refuses to build). So:
#   bash bench/gpu_check.sh --prepare     # here, once: the wheels into .whl/
#   then the device tool's run: command "bash bench/gpu_check.sh", carry [".whl"], timeout 540
# The extension is built in place (setup.py build_ext --inplace; sm_90a only unless
# TORCH_CUDA_ARCH_LIST says otherwise) and imported from the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
CUTLASS="nvidia-cutlass==$(sed -n 's/^nvidia-cutlass==//p' constraints.txt)"

if [[ "${1:-}" == "--prepare" ]]; then
  grep -qxF '/.whl/' .git/info/exclude || echo '/.whl/' >> .git/info/exclude
  python3 -m pip download -q --no-deps --only-binary=:all: -d .whl "$CUTLASS" "setuptools>=77"
  ls -l .whl
  exit 0
fi

PY="${PYTHON:-python3}"  # the machine's own; where `make setup` made .venv, that one
[[ -z "${PYTHON:-}" && -x .venv/bin/python ]] && PY=.venv/bin/python
if ! ls .whl/nvidia_cutlass-*.whl .whl/setuptools-*.whl > /dev/null 2>&1; then
  echo "gpu_check.sh: the wheels are missing from .whl/: run 'bash bench/gpu_check.sh --prepare' here and carry .whl" >&2
  exit 2
fi
export YL_CUDA=1 TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0a}" PYTHONUNBUFFERED=1
export PYTHONPATH="/tmp/yl-site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
[[ -n "${OUT:-}" ]] && exec > >(tee "$OUT/gpu_check.log") 2>&1  # the whole log comes back from $OUT
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
"$PY" -c "import os, sys, sysconfig, torch; h = os.path.join(sysconfig.get_paths()['include'], 'Python.h')
print('python', sys.version.split()[0], 'torch', torch.__version__, 'CUDA', torch.version.cuda,
      'Python.h', h if os.path.exists(h) else 'MISSING (the build needs the Python headers)')"
{ command -v nvcc && nvcc --version | tail -1; } || echo "nvcc not on PATH (setup.py also looks in CUDA_HOME and /usr/local/cuda)"
"$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/yl-site .whl/*.whl
time "$PY" setup.py -q build_ext --inplace

# After the build, a failing step is reported and the next one still runs: one run of this
# script is most of a session's device time.
failed=()
step() {
  echo "=== $*"
  "$@" || failed+=("$*")
}
step "$PY" -m yilightning.cli doctor
step "$PY" bench/gpu_targets.py                  # the MoE kernels' GPU targets, CUDA-event timed
# ~970 CUDA tests, ten of them torch.compile ones: in 8 processes where pytest-xdist is installed,
# each test stopped after 120 s where pytest-timeout is (the device machines have both; neither is
# a dependency of the project), so one hung kernel costs one test, not the lease: the thread
# method, since a thread stuck in a CUDA sync never returns to Python for a signal handler
extra=()
"$PY" -c "import xdist" 2> /dev/null && extra+=(-n 8)
"$PY" -c "import pytest_timeout" 2> /dev/null && extra+=(--timeout 120 --timeout-method thread)
step "$PY" -m pytest tests -m cuda -q -rs -p no:cacheprovider "${extra[@]}"
step "$PY" bench/bench_moe.py                    # the MoE layer side by side with its peers
step "$PY" bench/bench_attention.py --seq 8192   # attention beside SDPA
step "$PY" -m yilightning.cli quickstart         # the main job's self-check, on CPU and GPU
step "$PY" -m pytest bench --benchmark-only -q --benchmark-columns=mean,stddev,rounds --benchmark-sort=name \
  -p no:cacheprovider
if ((${#failed[@]})); then
  printf 'FAILED: %s\n' "${failed[@]}"
  exit 1
fi
echo "gpu_check.sh: every step passed"
