#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU (the device tool's H200): build the CUDA
# kernels for it, run the CUDA tests, then the GPU benchmarks. Meant to finish in < 8 minutes.
#   bash bench/gpu_check.sh            (TORCH_CUDA_ARCH_LIST defaults to 9.0a here)
set -euo pipefail
cd "$(dirname "$0")/.."
export YL_CUDA=1 TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0a}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
time make setup
.venv/bin/yilightning doctor
.venv/bin/yilightning quickstart            # self-check on CPU and GPU
.venv/bin/python -m pytest tests -m cuda -q -rs
.venv/bin/python -m pytest bench --benchmark-only -q --benchmark-columns=mean,stddev,rounds \
  --benchmark-sort=name --benchmark-json=gpu_bench.json
.venv/bin/python bench/gpu_targets.py       # the MoE kernels' GPU targets, CUDA-event timed
.venv/bin/python bench/bench_moe.py         # the MoE layer side by side with its peers
.venv/bin/python bench/bench_attention.py --seq 8192   # attention beside SDPA
