import numpy as np
import pytest

from yilightning.data import write_tokens
from yilightning.data.mixture import MixtureDataset, mixture_weights

W = {"web": {"stage1": 0.8, "fast_decay": 0.2}, "hq": {"stage1": 0.2, "fast_decay": 0.8}}


def test_weights_follow_the_stages():
    assert mixture_weights(W, "warmup") == mixture_weights(W, "stage1") == pytest.approx({"web": 0.8, "hq": 0.2})
    assert mixture_weights(W, "stage2", 0.5) == pytest.approx({"web": 0.5, "hq": 0.5})  # gradual shift
    assert mixture_weights(W, "fast_decay") == pytest.approx({"web": 0.2, "hq": 0.8})
    assert mixture_weights({"a": {"stage1": 1, "stage2": 3, "fast_decay": 1}, "b": {"stage1": 1}}, "stage2", 0.9) \
        == pytest.approx({"a": 0.75, "b": 0.25})
    with pytest.raises(ValueError, match="unknown stage"):
        mixture_weights(W, "stage9")
    with pytest.raises(ValueError, match="sum to 0"):
        mixture_weights({"a": {"stage1": 0}}, "stage1")


@pytest.fixture
def two_sources(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("web", "hq"):
        write_tokens([rng.integers(4, 100, 50).tolist() for _ in range(40)], tmp_path / name, eos_id=3)
    return tmp_path


def test_sampling_matches_the_weights_and_resumes(two_sources):
    data = MixtureDataset(two_sources, 16, W, seed=0)
    stage = lambda g: ("stage1", 0.0) if g < 400 else ("fast_decay", 0.0)  # noqa: E731
    it = data.batches(2, None, stage)
    picks = [next(it)[2] for _ in range(800)]
    early = np.mean([p["source"] == "web" for p in picks[:400]])
    late = np.mean([p["source"] == "web" for p in picks[400:]])
    assert 0.72 < early < 0.88 and 0.12 < late < 0.28
    again = data.batches(2, picks[99], stage)  # resume from the state after batch 100
    a, b = next(again), next(MixtureDataset(two_sources, 16, W, seed=0).batches(2, picks[99], stage))
    assert a[2] == picks[100] and b[2] == picks[100] and a[0].equal(b[0])


def test_bad_mixtures(two_sources, tmp_path):
    with pytest.raises(ValueError, match="no source \\['books'\\]"):
        MixtureDataset(two_sources, 16, {"books": {"stage1": 1}})
    with pytest.raises(FileNotFoundError, match="no source folders"):
        MixtureDataset(tmp_path / "empty", 16, W)


def test_length_binned_sampling_upsamples_long_documents(tmp_path):
    from yilightning.data import PackedDataset
    from yilightning.data.packing import length_weighted_batches

    rng = np.random.default_rng(0)
    docs = [rng.integers(4, 100, 8).tolist() for _ in range(64)] + [rng.integers(4, 100, 512).tolist()]
    write_tokens(docs, tmp_path, eos_id=3)  # 64 short documents (9 tokens) then one long one (513)
    data = PackedDataset(tmp_path, 32, seed=0)
    long = np.array([data._piece_at(k)[1].numel() == 2 for k in range(data.num_pieces)])  # one document fills it
    it = length_weighted_batches([data], 4, {0.0: 1.0, 1.0: 10.0})
    batches = [next(it) for _ in range(300)]
    drawn = np.mean([cu.numel() == 2 for _, cu, _ in (next(length_weighted_batches([data], 1, {0.0: 1.0, 1.0: 10.0},
                                                                                        start=g)) for g in range(300))])
    expected = 10 * long.sum() / (10 * long.sum() + (~long).sum())
    assert long.mean() < 0.55 and abs(drawn - expected) < 0.08  # ~0.47 of the pieces, ~0.9 of the draws
    again = next(length_weighted_batches([data], 4, {0.0: 1.0, 1.0: 10.0}, start=57))
    assert again[0].equal(batches[57][0]) and again[2] == 58  # resumable by batch index
    write_tokens([list(range(4, 40))] * 20, tmp_path / "second", eos_id=3)  # ids 4..39 only
    pooled = [next(length_weighted_batches([data, PackedDataset(tmp_path / "second", 32)], 1, {0.0: 1.0}, start=g))[0]
              for g in range(100)]
    from_second = np.mean([bool((ids < 40).all()) for ids in pooled])
    assert 0.2 < from_second < 0.8  # pieces of both sources are drawn
    with pytest.raises(ValueError, match="non-negative weights"):
        next(length_weighted_batches([data], 4, {}))
    with pytest.raises(ValueError, match="weight 0"):
        next(length_weighted_batches([data], 4, {100.0: 1.0}))


def test_a_growing_context_reads_one_stream_without_repeats_or_gaps(tmp_path):
    """Opened at 64 and at 128 tokens over blocks of 128, the dataset is the same shuffled token
    stream: a run that grows its context at any whole block continues exactly where it was."""
    import torch

    from yilightning.data import PackedDataset

    rng = np.random.default_rng(1)
    write_tokens([rng.integers(4, 100, 50).tolist() for _ in range(40)], tmp_path, eos_id=3)  # 2040 tokens
    short, long = PackedDataset(tmp_path, 64, seed=5, block_len=128), PackedDataset(tmp_path, 128, seed=5)
    assert short.num_pieces == 2 * long.num_pieces == 30
    stream = torch.cat([short.piece(i)[0] for i in range(short.num_pieces)])
    assert torch.equal(stream, torch.cat([long.piece(i)[0] for i in range(long.num_pieces)]))
    grown = torch.cat([short.piece(i)[0] for i in range(6)] + [long.piece(i)[0] for i in range(3, long.num_pieces)])
    assert torch.equal(grown, stream)
    assert sorted(long.order.tolist()) == list(range(long.num_pieces))  # every block once per epoch
    with pytest.raises(ValueError, match="multiple of seq_len"):
        PackedDataset(tmp_path, 48, block_len=128)


def test_a_token_folder_whose_two_files_disagree_is_refused(tmp_path):
    from yilightning.data import PackedDataset

    write_tokens([[5, 6, 7]] * 30, tmp_path, eos_id=3)
    np.asarray([0, 4, 8], dtype=np.int64).tofile(tmp_path / "docs.i64")  # as if the second rename never happened
    with pytest.raises(ValueError, match="does not describe"):
        PackedDataset(tmp_path, 16)
