import torch

from yilightning.train import CheckpointWriter, load_latest


def save(writer: CheckpointWriter, step: int) -> None:
    writer.save(step, {"step": step, "w": torch.full((3,), float(step))})
    writer.wait()


def test_keeps_the_newest_two_up_to_the_current_step(tmp_path):
    writer = CheckpointWriter(tmp_path)
    for step in (1, 2, 3):
        save(writer, step)
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-00000002", "step-00000003"]
    assert load_latest(tmp_path)["step"] == 3
    assert not list(tmp_path.glob(".*"))  # no temporary leftovers


def test_a_new_run_in_an_old_folder_never_prunes_its_own_checkpoint(tmp_path):
    old = CheckpointWriter(tmp_path)
    for step in (180, 240):
        save(old, step)
    save(CheckpointWriter(tmp_path), 60)  # a fresh run: later steps of the old run must not win
    assert (tmp_path / "step-00000060" / "state.pt").exists()
    assert load_latest(tmp_path)["step"] == 60
    save(CheckpointWriter(tmp_path), 60)  # rewriting the same step replaces it
    assert load_latest(tmp_path)["step"] == 60


def test_load_falls_back_to_an_older_checkpoint_when_the_newest_is_damaged(tmp_path):
    writer = CheckpointWriter(tmp_path)
    for step in (4, 8):
        save(writer, step)
    newest = tmp_path / "step-00000008" / "state.pt"
    newest.write_bytes(newest.read_bytes()[:20])  # truncated, as after a crash mid-write
    assert load_latest(tmp_path)["step"] == 4
    (tmp_path / "latest.json").unlink()
    assert load_latest(tmp_path)["step"] == 4
    assert load_latest(tmp_path / "missing") is None
