import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA GPU here; bench/gpu_check.sh runs these on one")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(autouse=True)
def _cuda_errors_stay_with_their_test(request):
    """Kernels run asynchronously: without a sync, a CUDA test's fault would surface in a later
    test (the error is sticky, so every later CUDA test of the process fails too)."""
    yield
    if "cuda" in request.keywords and torch.cuda.is_available():
        torch.cuda.synchronize()


# bf16 CPU kernels multiply in bf16 where the CPU has bf16 units (AVX512-BF16) and convert to
# fp32 elsewhere; a test parametrized with this name runs bf16 with the conversion forced
# (YL_CPU_BF16=0), so both paths are tested on any machine.
BF16_VIA_FP32 = "bfloat16-via-fp32"
# Where the CPU has AMX, the MoE experts' bf16 forward products run on its tiles; this name runs
# bf16 with them off (YL_CPU_AMX=0: oneDNN's bf16 GEMMs), so both paths are tested there.
BF16_WITHOUT_AMX = "bfloat16-without-amx"


@pytest.fixture
def resolve_dtype(monkeypatch):
    """``resolve_dtype(d)``: the torch dtype for a parametrized dtype (see BF16_VIA_FP32 and
    BF16_WITHOUT_AMX)."""
    def resolve(dtype):
        if dtype == BF16_VIA_FP32:
            monkeypatch.setenv("YL_CPU_BF16", "0")
            return torch.bfloat16
        if dtype == BF16_WITHOUT_AMX:
            monkeypatch.setenv("YL_CPU_AMX", "0")
            return torch.bfloat16
        return dtype
    return resolve


@pytest.fixture(params=["best", "avx2", "blas"])
def skinny_isa(request, monkeypatch) -> str:
    """Runs a test with each few-row CPU GEMM: the CPU's best skinny kernel, the AVX2 one (on an
    AVX-512 CPU too) and none (the BLAS), through YL_CPU_SKINNY."""
    if request.param != "best":
        monkeypatch.setenv("YL_CPU_SKINNY", "avx2" if request.param == "avx2" else "0")
    return request.param


@pytest.fixture(params=["tiled", "blas"])
def cpu_gemm(request, monkeypatch) -> str:
    """Runs a test with each fp32 CPU GEMM through YL_CPU_GEMM: our tiled AVX-512 kernel (forced on
    any CPU with AVX-512; the BLAS where there is none) and the BLAS."""
    monkeypatch.setenv("YL_CPU_GEMM", "blas" if request.param == "blas" else "avx512")
    return request.param
