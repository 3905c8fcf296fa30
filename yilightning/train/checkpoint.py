"""Checkpoints that are never half-written: the state is snapshotted into memory (the report's
memory-based checkpointing: training continues at once), written from a background thread into
a temporary folder, and published with an atomic rename plus an atomic ``latest`` pointer."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import torch


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


class CheckpointWriter:
    """``save(step, state)`` snapshots and returns immediately; ``wait()`` joins the writer."""

    def __init__(self, directory: str | os.PathLike, keep: int = 2) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, step: int, state: dict[str, Any]) -> None:
        self.wait()
        snapshot = _to_cpu(state)
        self._thread = threading.Thread(target=self._write, args=(step, snapshot), daemon=False)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError(f"checkpoint write failed: {error}") from error

    def _write(self, step: int, snapshot: dict[str, Any]) -> None:
        try:
            final = self.dir / f"step-{step:08d}"
            tmp = self.dir / f".step-{step:08d}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            torch.save(snapshot, tmp / "state.pt")
            if final.exists():  # a rerun of the same step replaces it
                shutil.rmtree(final)
            os.replace(tmp, final)
            pointer = self.dir / ".latest.tmp"
            pointer.write_text(json.dumps({"step": step, "path": final.name}))
            os.replace(pointer, self.dir / "latest.json")
            for old in sorted(self.dir.glob("step-*"))[:-self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException as e:  # surfaced by wait() in the training thread
            self._error = e


def load_latest(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The newest complete checkpoint's state, or None if there is none."""
    pointer = Path(directory) / "latest.json"
    if not pointer.exists():
        return None
    path = Path(directory) / json.loads(pointer.read_text())["path"] / "state.pt"
    return torch.load(path, map_location="cpu", weights_only=False)
