"""Qt-free side of the Train dock: build and check an ``adaqat train`` command, run it as a
subprocess and follow ``RUN/progress.jsonl`` without ever blocking the caller.

Everything here returns at once: the dock calls :meth:`TrainProcess.poll` from a QTimer.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from napari_adaqat.train.paths import check_run_folder, run_paths

STOP_GRACE_S = 15.0  # after SIGTERM, wait this long before SIGKILL


@dataclass
class TrainRequest:
    """What the dock's fields say; ``None``/0 means "leave it to the preset"."""

    stage: int = 1
    data: str = ""
    out: str = ""
    checkpoint: str = ""
    from_run: str = ""
    model_type: Optional[str] = "vit_b"
    preset: str = "paper"
    mode: Optional[str] = "adalora"
    epochs: int = 0
    batch_size: int = 0
    device: str = "auto"
    resume: bool = False
    max_steps_per_epoch: int = 0
    extra: tuple[str, ...] = ()  # further arguments, e.g. ("--set", "qat.trainable=authors")

    def args(self) -> list[str]:
        """The ``adaqat train`` arguments (without the program). A resumed run keeps its saved
        config.json: only the run, the data, the device and the numbers typed in are passed."""
        a = ["train", "--stage", str(self.stage), "--data", self.data, "--out", self.out]
        if self.resume:
            return a + self._numbers() + ["--device", self.device, *self.extra, "--resume"]
        a += ["--preset", self.preset]
        if self.stage == 2 and self.from_run:
            a += ["--from", self.from_run]
        elif self.checkpoint:
            a += ["--checkpoint", self.checkpoint]
        if self.stage == 1:
            a += ["--model-type", self.model_type] if self.model_type else []
            a += ["--mode", self.mode] if self.mode else []
        return a + self._numbers() + ["--device", self.device, *self.extra]

    def _numbers(self) -> list[str]:
        """The epoch, batch and step counts typed in (0 = leave them to the preset or the run)."""
        given = (("--epochs", self.epochs), ("--batch-size", self.batch_size),
                 ("--max-steps-per-epoch", self.max_steps_per_epoch))
        return [item for flag, value in given if value > 0 for item in (flag, str(value))]

    def argv(self) -> list[str]:
        """The full command this process will run."""
        return [sys.executable, "-m", "napari_adaqat", *self.args()]

    def command_line(self) -> str:
        """The exact command, as a copyable shell line (``adaqat …`` takes the same arguments)."""
        return shlex.join(self.argv())

    def problem(self) -> Optional[str]:
        """A one-line reason why this cannot start, or None when it can."""
        data = Path(self.data) if self.data else None
        if data is None:
            return "Choose a data folder (DIR/images + DIR/masks, or DIR/train|val|test/…)."
        if not data.is_dir():
            return f"Data folder not found: {data}"
        if not ((data / "images").is_dir() or (data / "train" / "images").is_dir()):
            return f"{data} has no images/ folder (expected DIR/images + DIR/masks, or DIR/train/images …)."
        if not self.out:
            return "Choose an output run folder."
        try:  # the same run-folder rules as adaqat train and train(...)
            check_run_folder(self.out, self.data, resume=self.resume, from_run=self.from_run or None)
        except (ValueError, FileExistsError) as exc:
            return str(exc)
        if self.checkpoint and not (self.stage == 2 and self.from_run) and not Path(self.checkpoint).is_file():
            return f"Start checkpoint not found: {self.checkpoint}"
        if self.stage == 2:
            if not self.from_run and not self.checkpoint:
                return "Stage 2 needs a Stage-1 run folder ('from run') or a start checkpoint."
            if self.from_run and not run_paths(self.from_run)["best"].is_file():
                return f"{self.from_run} holds no Stage-1 model (checkpoints/best.safetensors)."
        elif self.mode not in (None, "full") and not self.checkpoint and not self.resume:
            return f"Mode '{self.mode}' needs a start checkpoint (e.g. sam_vit_b_01ec64.pth); or use mode 'full'."
        return None


class ProgressFollower:
    """Reads the complete JSON lines appended to a file since a byte offset.

    A file that is replaced (new inode) or shrinks (truncated by a fresh run) is read again
    from its start, so a reused run folder never hides the new run's progress.
    """

    def __init__(self, path: str | Path, offset: int = 0) -> None:
        self.path = Path(path)
        self.offset = offset
        self._inode = self._stat_inode()

    def _stat_inode(self) -> Optional[int]:
        try:
            return self.path.stat().st_ino
        except OSError:
            return None

    @classmethod
    def from_end(cls, path: str | Path) -> "ProgressFollower":
        p = Path(path)
        return cls(p, p.stat().st_size if p.is_file() else 0)

    def read_new(self) -> list[dict]:
        try:
            with self.path.open("rb") as fh:
                stat = os.fstat(fh.fileno())
                if stat.st_ino != self._inode or stat.st_size < self.offset:
                    self._inode, self.offset = stat.st_ino, 0  # a new file: start over
                fh.seek(self.offset)
                chunk = fh.read()
        except OSError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []  # nothing, or a half-written line: wait for the rest
        self.offset += end + 1
        records = []
        for line in chunk[:end].splitlines():
            try:
                records.append(json.loads(line))
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
        return records


class CommandProcess:
    """One ``python -m napari_adaqat …`` subprocess; stderr goes to a temporary file (no pipe to drain)."""

    def __init__(self, argv: list[str], label: str = "") -> None:
        self.argv = list(argv)
        self.label = label or shlex.join(self.argv[3:5])
        self._err = tempfile.TemporaryFile()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self._err, env=env, start_new_session=(os.name == "posix"))
        self.stopping = False
        self._kill_at: Optional[float] = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def returncode(self) -> Optional[int]:
        return self.proc.poll()

    def poll(self) -> list[dict]:
        """New progress records (none for a plain command); escalates a pending stop to SIGKILL after
        the grace period."""
        if self._kill_at is not None and time.monotonic() > self._kill_at and self.running():
            self.proc.kill()
            self._kill_at = None
        return []

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Ask the process to end (SIGTERM; checkpoints are written atomically, so a later --resume
        continues from the last finished epoch). Returns at once."""
        if not self.running():
            return
        self.stopping = True
        self.proc.send_signal(signal.SIGTERM) if os.name == "posix" else self.proc.terminate()
        self._kill_at = time.monotonic() + grace_s

    def last_error_line(self) -> str:
        """The last non-empty line the process wrote to stderr."""
        try:
            self._err.seek(0, os.SEEK_END)
            size = self._err.tell()
            self._err.seek(max(0, size - 16384))
            lines = [ln.strip() for ln in self._err.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        except (OSError, ValueError):
            return ""
        return lines[-1] if lines else ""

    def close(self) -> None:
        self._err.close()


class TrainProcess(CommandProcess):
    """One ``adaqat train`` subprocess that also follows its ``RUN/progress.jsonl``."""

    def __init__(self, request: TrainRequest) -> None:
        self.request = request
        self.follower = ProgressFollower.from_end(run_paths(request.out)["progress"])
        super().__init__(request.argv(), f"stage {request.stage} training")

    def poll(self) -> list[dict]:
        super().poll()
        return self.follower.read_new()


def status_text(rec: dict) -> str:
    """One status line for a progress record."""
    kind = rec.get("kind")
    if kind == "start":
        resumed = " (resumed)" if rec.get("resumed_from") else ""
        return (f"Started stage {rec.get('stage')} ({rec.get('mode')}, {rec.get('preset')}) on {rec.get('device')}: "
                f"{rec.get('train')} train / {rec.get('val')} val images{resumed}")
    if kind == "step":
        return f"Epoch {rec.get('epoch')}, step {rec.get('step')}/{rec.get('steps')} · loss {rec.get('loss', 0):.4f}"
    if kind == "epoch":
        rank = rec.get("rank_budget")
        eta = float(rec.get("eta_s") or 0)
        return (f"Epoch {rec.get('epoch')}/{rec.get('epochs')} · loss {rec.get('loss', 0):.4f} · "
                f"val Dice {rec.get('val_dice', 0):.4f} · best Dice {rec.get('best_dice', 0):.4f} · "
                f"rank budget {rank if rank is not None else '–'} · ETA {format_duration(eta)}")
    if kind == "early_stop":
        return f"Early stop at epoch {rec.get('epoch')} · best Dice {rec.get('best_dice', 0):.4f}"
    if kind == "done":
        return f"Done: {rec.get('epochs_run')} epochs · best Dice {rec.get('best_dice', 0):.4f}"
    return str(kind)


def format_duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else (f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s} s")
