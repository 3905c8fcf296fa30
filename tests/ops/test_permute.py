import pytest
import torch

from yilightning.ops import permute, route, unpermute


def routed(T, H, E, k, device, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, H, generator=g).to(device=device, dtype=dtype)
    logits = torch.randn(T, E, generator=g).to(device)
    w, idx, _ = route(logits, k)
    return x, w, idx


@pytest.mark.parametrize("T,H,E,k", [(0, 8, 4, 2), (1, 7, 4, 1), (97, 33, 16, 4), (64, 16, 8, 8), (50, 8, 64, 6)])
def test_permute_is_stable_and_grouped(device, T, H, E, k):
    x, _, idx = routed(T, H, E, k, device)
    xs, sizes, row_map = permute(x, idx, E)
    assert xs.shape == (T * k, H) and sizes.shape == (E,) and sizes.device == x.device
    assert torch.equal(sizes.cpu(), torch.bincount(idx.flatten().cpu(), minlength=E))
    # expected: for each expert in order, the tokens that chose it, in token order
    want = [t for e in range(E) for t in range(T) for j in range(k) if idx[t, j] == e]
    assert torch.equal(xs, x[torch.tensor(want, dtype=torch.long, device=device)])
    flat_rows = row_map.view(T, k)
    for t in range(min(T, 10)):
        for j in range(k):
            assert torch.equal(xs[flat_rows[t, j]], x[t])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_round_trip_and_gradients(device, dtype):
    x, w, idx = routed(37, 24, 16, 4, device, dtype=dtype)
    x = x.requires_grad_()
    w = w.detach().requires_grad_()
    xs, _, row_map = permute(x, idx, 16)
    y = unpermute(xs * 2, row_map, w)
    want = (x.float() * 2 * w.sum(-1, keepdim=True)).to(dtype)
    torch.testing.assert_close(y, want, rtol=1e-2 if dtype != torch.float32 else 1e-5, atol=1e-2 if dtype != torch.float32 else 1e-5)
    g = torch.randn_like(y)
    y.backward(g)
    torch.testing.assert_close(x.grad.float(), (g.float() * 2 * w.detach().sum(-1, keepdim=True)), rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(w.grad, (g.float() * x.detach().float() * 2).sum(-1, keepdim=True).expand(-1, 4), rtol=2e-2, atol=2e-2)


def test_unpermute_is_deterministic(device):
    x, w, idx = routed(500, 64, 8, 4, device)
    xs, _, row_map = permute(x, idx, 8)
    a, b = unpermute(xs, row_map, w), unpermute(xs, row_map, w)
    assert torch.equal(a, b)


def test_bad_input():
    x = torch.randn(4, 8)
    with pytest.raises(ValueError, match=r"lie in \[0, num_experts=4\)"):
        permute(x, torch.full((4, 2), 4), 4)
    with pytest.raises(ValueError, match=r"indices must be \[T=4, k\]"):
        permute(x, torch.zeros(3, 2, dtype=torch.int64), 4)
    with pytest.raises(TypeError, match="int64"):
        permute(x, torch.zeros(4, 2, dtype=torch.int32), 4)
    with pytest.raises(ValueError, match="x must be"):
        permute(torch.randn(4), torch.zeros(4, 2, dtype=torch.int64), 4)
    with pytest.raises(ValueError, match="unpermute"):
        unpermute(torch.randn(8, 3), torch.arange(7), torch.rand(4, 2))
