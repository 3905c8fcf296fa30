"""Checkpoints that are never half-written: the state is snapshotted into memory (the report's
memory-based checkpointing: training continues at once), written from a background thread into
a temporary folder, and published with an atomic rename plus an atomic ``latest`` pointer."""

from __future__ import annotations

import json
import os
import pickle
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
            _fsync(tmp / "state.pt")
            _fsync(tmp)
            if final.exists():  # a rerun of the same step: set the old copy aside until replaced
                stale = self.dir / f".step-{step:08d}.old"
                shutil.rmtree(stale, ignore_errors=True)
                os.replace(final, stale)
            os.replace(tmp, final)
            pointer = self.dir / ".latest.tmp"
            pointer.write_text(json.dumps({"step": step, "path": final.name}))
            _fsync(pointer)
            os.replace(pointer, self.dir / "latest.json")
            _fsync(self.dir)  # the renames themselves reach the disk before anything is deleted
            shutil.rmtree(self.dir / f".step-{step:08d}.old", ignore_errors=True)
            # keep the newest `keep` checkpoints up to this step; never the one just written,
            # and never a later step left by an earlier run in the same folder
            older = [p for p in checkpoint_dirs(self.dir) if _step_of(p) < step]
            for old in older[:max(0, len(older) - (self.keep - 1))]:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException as e:  # surfaced by wait() in the training thread
            self._error = e


def _fsync(path: Path) -> None:
    """Flush a file's or a folder's entries to the disk (folders: where the platform allows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some platforms cannot fsync a folder
    finally:
        os.close(fd)


def _step_of(path: Path) -> int | None:
    try:
        return int(path.name.removeprefix("step-"))
    except ValueError:
        return None


def checkpoint_dirs(directory: str | os.PathLike) -> list[Path]:
    """The ``step-*`` checkpoint folders in ``directory``, oldest first (none: [])."""
    return sorted((p for p in Path(directory).glob("step-*") if _step_of(p) is not None), key=_step_of)


def checkpoint_steps(directory: str | os.PathLike) -> list[int]:
    """The steps of ``checkpoint_dirs(directory)``."""
    return [_step_of(p) for p in checkpoint_dirs(directory)]


def load_latest(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The newest complete checkpoint's state, or None if there is none. ``latest.json`` names it;
    if that file is missing or unreadable, the newest ``step-*`` folder that loads is used."""
    directory = Path(directory)
    pointer = directory / "latest.json"
    candidates = checkpoint_dirs(directory)[::-1]
    if pointer.exists():
        try:
            named = directory / json.loads(pointer.read_text())["path"]
            candidates = [named] + [p for p in candidates if p != named]
        except (ValueError, KeyError):
            pass
    for path in candidates:
        try:
            return torch.load(path / "state.pt", map_location="cpu", weights_only=False)
        except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError):
            continue  # a truncated or missing file: try the next older checkpoint
    return None
