import pytest
import torch

from yilightning import _ext
from yilightning.ops import permute, permute_reference, route, unpermute, unpermute_reference

needs_ext = pytest.mark.skipif(_ext.module is None, reason=f"extension not loaded: {_ext.load_error}")
SHAPES = [(0, 8, 4, 2), (1, 7, 4, 1), (97, 33, 16, 4), (64, 16, 8, 8), (50, 8, 64, 6), (300, 1000, 3, 2)]


def routed(T, H, E, k, device, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, H, generator=g).to(device=device, dtype=dtype)
    w, idx, _ = route(torch.randn(T, E, generator=g).to(device), k)
    return x, w, idx


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("T,H,E,k", SHAPES)
def test_permute_matches_reference_and_is_stable(device, T, H, E, k, dtype):
    x, _, idx = routed(T, H, E, k, device, dtype=dtype)
    xs, sizes, row_map = permute(x, idx, E)
    rxs, rsizes, rrow_map = permute_reference(x, idx, E)
    assert torch.equal(xs, rxs) and torch.equal(sizes, rsizes) and torch.equal(row_map, rrow_map)
    assert sizes.device == x.device and sizes.dtype == torch.int64
    # for each expert in order, the tokens that chose it, in token order
    want = [t for e in range(E) for t in range(T) for j in range(k) if idx[t, j] == e]
    assert torch.equal(xs, x[torch.tensor(want, dtype=torch.long, device=device)])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("T,H,E,k", SHAPES)
def test_unpermute_matches_reference(device, T, H, E, k, dtype):
    x, w, idx = routed(T, H, E, k, device, dtype=dtype)
    xs, _, row_map = permute(x, idx, E)
    y = xs * 3
    out = unpermute(y, row_map, w)
    torch.testing.assert_close(out, unpermute_reference(y, row_map, w), rtol=1e-6, atol=1e-6)
    assert out.dtype == dtype and out.shape == (T, H)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gradients_match_reference(device, dtype):
    x, w, idx = routed(37, 24, 16, 4, device, dtype=dtype)
    y = torch.randn(37 * 4, 24, device=device, dtype=dtype)

    def run(perm, unperm):
        xi, yi, wi = (t.detach().clone().requires_grad_() for t in (x, y, w))
        xs, _, row_map = perm(xi, idx, 16)
        out = unperm(xs * yi, row_map, wi)
        out.float().square().sum().backward()
        return xi.grad, yi.grad, wi.grad

    for ours, ref in zip(run(permute, unpermute), run(permute_reference, unpermute_reference)):
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_unpermute_is_deterministic(device):
    x, w, idx = routed(500, 64, 8, 4, device)
    xs, _, row_map = permute(x, idx, 8)
    assert torch.equal(unpermute(xs, row_map, w), unpermute(xs, row_map, w))


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda: permute(torch.randn(4, 8), torch.full((4, 2), 4), 4), ValueError, r"lie in \[0, num_experts=4\)"),
        (lambda: permute(torch.randn(4, 8), torch.zeros(3, 2, dtype=torch.int64), 4), ValueError, r"\[T=4, k\]"),
        (lambda: permute(torch.randn(4, 8), torch.zeros(4, 2, dtype=torch.int32), 4), TypeError, "int64"),
        (lambda: permute(torch.randn(4), torch.zeros(4, 2, dtype=torch.int64), 4), ValueError, r"\[T, H\]"),
        (lambda: permute(torch.randn(4, 8), torch.zeros(4, 2, dtype=torch.int64), 0), ValueError, "num_experts"),
        (lambda: unpermute(torch.randn(8, 3), torch.arange(7), torch.rand(4, 2)), ValueError, "unpermute"),
        (lambda: unpermute(torch.randn(8, 3), torch.arange(8.0), torch.rand(4, 2)), TypeError, "row_map int64"),
    ],
)
def test_bad_input(call, exc, words):
    with pytest.raises(exc, match=words):
        call()


@needs_ext
def test_kernels_validate_their_own_input():
    with pytest.raises(RuntimeError, match=r"indices must lie in \[0, num_experts=4\)"):
        torch.ops.yilightning.permute(torch.randn(4, 8), torch.full((4, 2), 9), 4)
    with pytest.raises(RuntimeError, match="row_map values must lie in"):
        torch.ops.yilightning.unpermute(torch.randn(8, 3), torch.full((8,), 99), torch.rand(4, 2))
    with pytest.raises(RuntimeError, match="weights must be float32"):
        torch.ops.yilightning.unpermute(torch.randn(8, 3), torch.arange(8), torch.rand(4, 2).double())
    # a repeated row (the backward would overwrite it instead of summing, and never write the
    # missing one): found by fuzzing, when the CPU kernel checked only the range
    twice = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    with pytest.raises(RuntimeError, match="permutation of .* row 0 appears twice"):
        unpermute(torch.randn(8, 4), twice, torch.ones(4, 2))
    with pytest.raises(RuntimeError, match="unpermute_backward: row_map must be a permutation"):
        torch.ops.yilightning.unpermute_backward(torch.randn(4, 4), torch.randn(8, 4), twice, torch.ones(4, 2))


@needs_ext
def test_opcheck(device):
    x, w, idx = routed(13, 10, 4, 3, device)
    torch.library.opcheck(torch.ops.yilightning.permute.default, (x.requires_grad_(), idx, 4))
    xs, _, row_map = permute(x.detach(), idx, 4)
    torch.library.opcheck(torch.ops.yilightning.unpermute.default, (xs.requires_grad_(), row_map, w.requires_grad_()))
    torch.library.opcheck(torch.ops.yilightning.unpermute_backward.default,
                          (torch.randn(13, 10, device=device), xs.detach(), row_map, w.detach()))


def test_compile_fullgraph(device):
    torch._dynamo.reset()

    @torch.compile(fullgraph=True, dynamic=False)
    def roundtrip(x, idx, w):
        xs, sizes, row_map = permute(x, idx, 6)
        return unpermute(xs * 2, row_map, w), sizes

    x, w, idx = routed(21, 12, 6, 2, device)
    x.requires_grad_()
    out, sizes = roundtrip(x, idx, w)
    out.sum().backward()
    torch.testing.assert_close(out, 2 * x.detach() * w.sum(-1, keepdim=True))
    torch.testing.assert_close(x.grad, (2 * w.sum(-1, keepdim=True)).expand(-1, 12))
    assert int(sizes.sum()) == 42


@pytest.mark.cuda
def test_cuda_kernels_keep_groups_aligned_around_invalid_ids():
    """The CUDA kernels cannot check ids without a host sync: an id outside [0, E) (a negative
    "dropped" marker too) is left out of every group and sorted after them, and an unpermute
    row_map entry out of range reads as zero instead of touching memory out of bounds."""
    x = torch.arange(3 * 4, dtype=torch.float32, device="cuda").view(3, 4)
    idx = torch.tensor([[-1], [0], [5]], device="cuda")
    x_sorted, sizes, _ = torch.ops.yilightning.permute(x, idx, 1)
    assert sizes.tolist() == [1] and torch.equal(x_sorted[0], x[1])
    w = torch.ones(3, 1, device="cuda")
    bad_map = torch.tensor([0, 1, 7], device="cuda")
    out = torch.ops.yilightning.unpermute(x_sorted, bad_map, w)
    assert torch.equal(out[2], torch.zeros(4, device="cuda"))
