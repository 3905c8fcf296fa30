"""The extension loader, the fallback path and the build report."""

import os
import subprocess
import sys

import pytest
import torch

import yilightning
from yilightning import _ext


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-W", "default", "-c", code],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.skipif(_ext.DISABLED, reason="this run forces the fallback with YL_DISABLE_EXT=1")
def test_extension_is_built_and_loaded():
    # A broken build must fail the suite, not silently turn every op into its reference.
    assert _ext.module is not None, _ext.load_error
    assert _ext.has_kernel("swiglu", "cpu") and _ext.has_kernel("swiglu_backward", "cpu")


FALLBACK_CHECK = """
import torch, yilightning
from yilightning import _ext
assert _ext.module is None and _ext.KERNELS == frozenset(), _ext.KERNELS
x = torch.randn(5, 12, requires_grad=True)
y = yilightning.ops.swiglu(x)
y.sum().backward()
g, u = x.detach().chunk(2, -1)
torch.testing.assert_close(y, torch.nn.functional.silu(g) * u)
assert x.grad is not None
print(yilightning.info.format_build_info(yilightning.build_info()))
"""


def test_disable_env_forces_silent_fallback():
    r = run_python(FALLBACK_CHECK, YL_DISABLE_EXT="1")
    assert r.returncode == 0, r.stderr
    assert "Warning" not in r.stderr
    assert "disabled by YL_DISABLE_EXT=1" in r.stdout
    assert "every op runs its pure-PyTorch reference" in r.stdout


def test_broken_extension_warns_once_and_falls_back():
    # sys.modules[name] = None makes `from yilightning import _C` raise ImportError.
    r = run_python("import sys; sys.modules['yilightning._C'] = None\n" + FALLBACK_CHECK, YL_DISABLE_EXT="")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("compiled kernels unavailable") == 1, r.stderr
    assert "pip install --no-build-isolation" in r.stderr


@pytest.mark.skipif(os.environ.get("YL_CUDA") != "1" or _ext.DISABLED,
                    reason="CUDA kernels not required (YL_CUDA != 1), or the extension is disabled")
def test_cuda_kernels_compiled_when_required():
    # CI sets YL_CUDA=1: the CUDA kernels must have been compiled (they run on a GPU machine).
    info = yilightning.build_info()
    assert info["cuda_kernels_compiled"], info
    assert info["ops"]["swiglu"]["cuda"]


def test_build_info_reports_versions_and_ops():
    info = yilightning.build_info()
    assert info["yilightning"] == yilightning.__version__
    assert info["torch"] == torch.__version__
    assert info["omp_threads"] == torch.get_num_threads()
    assert info["gpus"] == ([] if not torch.cuda.is_available() else info["gpus"])
    if info["extension_loaded"]:
        assert info["built_against_torch"] == torch.__version__
        assert info["ops"]["swiglu"]["cpu"] is True
        assert info["ops"]["swiglu"]["cuda"] is info["cuda_kernels_compiled"]
        if info["cuda_kernels_compiled"]:
            assert info["cuda_archs"] and info["cuda_version"]


class _Tagged(torch.Tensor):
    """A tensor subclass: its calls must keep the full dispatcher path."""


def test_no_grad_short_path_only_for_plain_tensors_on_one_device():
    x, w = torch.randn(3, 4), torch.nn.Parameter(torch.randn(5, 4))
    assert _ext._plain((x, w, None, 1.0))
    assert not _ext._plain((x.as_subclass(_Tagged), w))  # a subclass first
    assert not _ext._plain((x, w.detach().as_subclass(_Tagged)))  # or later
    assert not _ext._plain((x.to("meta"), w))  # a device without a kernel key here
    assert not _ext._plain((x, w.detach().to("meta")))  # mixed devices
    # with grad mode on, only while no argument requires grad
    assert not _ext._plain((x, w, None, 1.0), grad=True)
    assert _ext._plain((x, w.detach(), None, 1.0), grad=True)
    assert not _ext._plain((x.requires_grad_(), w.detach()), grad=True)


@pytest.mark.skipif(_ext.module is None, reason="extension not loaded")
def test_no_grad_calls_give_the_same_results_on_either_path():
    x, w = torch.randn(9, 40), torch.nn.Parameter(torch.randn(33, 40))
    with torch.no_grad():
        short = yilightning.ops.linear(x, w)  # redispatched straight to the CPU kernel
        full = torch.ops.yilightning.linear(x, w, None)
    torch.testing.assert_close(short, full, rtol=0, atol=0)


@pytest.mark.skipif(_ext.module is None, reason="extension not loaded")
def test_grad_mode_calls_without_grad_inputs_take_the_short_path_and_record_nothing(monkeypatch):
    x, w = torch.randn(9, 40), torch.nn.Parameter(torch.randn(33, 40))
    full = torch.ops.yilightning.linear(x, w.detach(), None)
    packet_calls = []  # the full path calls the packet (overload resolution, then the autograd rule)
    packet = type(torch.ops.yilightning.linear)
    monkeypatch.setattr(packet, "__call__", lambda self, *a, _call=packet.__call__: packet_calls.append(self)
                        or _call(self, *a))
    frozen = yilightning.ops.linear(x, w.detach())  # grad mode on, nothing requires grad
    assert packet_calls == [] and not frozen.requires_grad and frozen.grad_fn is None
    torch.testing.assert_close(frozen, full, rtol=0, atol=0)
    trained = yilightning.ops.linear(x, w)  # w requires grad: the full path, with the autograd rule
    assert len(packet_calls) == 1 and trained.grad_fn is not None
    trained.sum().backward()
    torch.testing.assert_close(w.grad, torch.ones(9, 33).T @ x)
