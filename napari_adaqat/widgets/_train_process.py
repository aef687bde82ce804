"""Qt-free side of the Train dock: run ``adaqat train`` (one stage, or the chain ``--stage all``) as a
subprocess, its arguments derived from a :class:`TrainConfig` / :class:`Chain` (never typed here), and follow
its JSON-lines progress without ever blocking the caller.

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
from pathlib import Path
from typing import Optional

from napari_adaqat.train.chain import Chain, chain_paths, config_args
from napari_adaqat.train.config import TrainConfig
from napari_adaqat.train.paths import run_paths

STOP_GRACE_S = 15.0  # after SIGTERM, wait this long before SIGKILL


class ProgressFollower:
    """Reads the complete JSON lines appended to a file since a byte offset.

    A file that is replaced (new inode) or shrinks (truncated by a fresh run) is read again
    from its start, so a reused run folder never hides the new run's progress.
    """

    def __init__(self, path: str | Path, offset: int = 0) -> None:
        self.path = Path(path)
        self.start = self.offset = offset  # [start, offset): the records read so far (see taken())
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
                    self._inode, self.start, self.offset = stat.st_ino, 0, 0  # a new file: start over
                fh.seek(self.offset)
                chunk = fh.read()
        except OSError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []  # nothing, or a half-written line: wait for the rest
        self.offset += end + 1
        return _parse(chunk[:end])

    def taken(self) -> list[dict]:
        """The records :meth:`read_new` has returned so far, read again from the file (nobody keeps a copy)."""
        try:
            with self.path.open("rb") as fh:
                if os.fstat(fh.fileno()).st_ino != self._inode:
                    return []
                fh.seek(self.start)
                return _parse(fh.read(self.offset - self.start))
        except OSError:
            return []


def _parse(chunk: bytes) -> list[dict]:
    """The JSON records of complete lines (a line that is not one is passed over)."""
    records = []
    for line in chunk.splitlines():
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

    def taken(self) -> list[dict]:
        """Every progress record :meth:`poll` has returned, in order, read again from the logs (none here)."""
        return []

    def close(self) -> None:
        self._err.close()


def adaqat_argv(args: list[str]) -> list[str]:
    """The full command of ``adaqat ARGS`` as this Python runs it."""
    return [sys.executable, "-m", "napari_adaqat", *args]


class TrainProcess(CommandProcess):
    """One ``adaqat train --stage 1|2`` subprocess for ``config`` that also follows its ``RUN/progress.jsonl``."""

    def __init__(self, config: TrainConfig, resume: bool = False) -> None:
        self.config, self.resume = config, resume
        self.follower = ProgressFollower.from_end(run_paths(config.out)["progress"])
        super().__init__(adaqat_argv(config_args(config, resume)), f"stage {config.stage} training")

    def poll(self) -> list[dict]:
        super().poll()
        return self.follower.read_new()

    def taken(self) -> list[dict]:
        return self.follower.taken()


class ChainProcess(CommandProcess):
    """One ``adaqat train --stage all`` subprocess for ``chain``. It follows the chain's own log and, from a
    step's ``chain`` start record on, that stage's log (read from its start: a resumed stage's old records
    continue its curves)."""

    def __init__(self, chain: Chain, resume: bool = False) -> None:
        self.chain, self.resume = chain, resume
        self.follower = ProgressFollower.from_end(chain_paths(chain.out)["progress"])
        self.stage_follower: Optional[ProgressFollower] = None
        self.last_vote: Optional[dict] = None  # the vote step's last epoch record (what a stop during it says)
        super().__init__(adaqat_argv(chain.argv(resume)), "the chain")

    def poll(self) -> list[dict]:
        super().poll()
        records = []
        for rec in self.follower.read_new():
            records.append(rec)
            self.last_vote = rec if rec.get("kind") == "vote_epoch" else self.last_vote
            if rec.get("kind") == "chain" and rec.get("status") == "start" and rec.get("step", "").startswith("stage"):
                self.label = f"{rec['step'][:-1]} {rec['step'][-1]}"
                self.stage_follower = ProgressFollower(run_paths(rec["path"])["progress"])
            elif rec.get("kind") == "chain" and rec.get("status") == "start":
                self.label = "the vote" if rec.get("step") == "vote" else f"export {rec.get('step')}"
        if self.stage_follower is not None:
            records += self.stage_follower.read_new()
        return records

    def taken(self) -> list[dict]:
        """The chain's records, then the current stage's (those of the stages before it: in their own logs)."""
        return self.follower.taken() + (self.stage_follower.taken() if self.stage_follower is not None else [])


def status_text(rec: dict) -> str:
    """One status line for a progress record."""
    kind = rec.get("kind")
    if kind == "start":
        resumed = " (resumed)" if rec.get("resumed_from") else ""
        return (f"Started stage {rec.get('stage')} ({rec.get('mode')}, {rec.get('preset')}) on {rec.get('device')}: "
                f"{rec.get('train')} train / {rec.get('val')} val images{resumed}")
    if kind == "step":
        return f"Epoch {rec.get('epoch')}, step {rec.get('step')}/{rec.get('steps')} · loss {rec.get('loss', 0):.4f}"
    if kind == "epoch":  # (the adapters' rank budget: in the tooltip of the line over the plot, _train_plot.py)
        eta = rec.get("eta_s", 0)
        return (f"Epoch {rec.get('epoch')}/{rec.get('epochs')} · loss {rec.get('loss', 0):.4f} · "
                f"val Dice {rec.get('val_dice', 0):.4f} · best Dice {rec.get('best_dice', 0):.4f} · "
                f"ETA {format_duration(float(eta or 0)) if eta is not None else 'after the next epoch'}")
    if kind == "start_val":
        n = rec.get("val")
        return (f"The starting model, before training: val Dice {rec.get('val_dice', 0):.4f}"
                + (f" on {n} validation film{'' if n == 1 else 's'}" if n is not None else ""))
    if kind == "early_stop":
        return f"Early stop at epoch {rec.get('epoch')} · best Dice {rec.get('best_dice', 0):.4f}"
    if kind == "done":
        return f"Done: {rec.get('epochs_run')} epochs · best Dice {rec.get('best_dice', 0):.4f}"
    if kind == "vote_epoch":
        return (f"The vote: epoch {rec.get('epoch')}/{rec.get('epochs')} · loss {rec.get('loss', 0):.4f} · "
                f"val Dice {rec.get('val_dice', 0):.4f} · ETA {format_duration(float(rec.get('eta_s') or 0))}")
    if kind == "chain":
        return f"Step {rec.get('index')}/{rec.get('steps')} ({rec.get('step')}): {rec.get('status')}"
    if kind == "chain_done":
        return f"Chain done in {format_duration(float(rec.get('seconds') or 0))}"
    return str(kind)


def format_duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else (f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s} s")
