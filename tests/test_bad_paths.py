"""Awkward paths for ``adaqat segment``: non-UTF-8 and 255-byte file names, symbolic link loops,
links to folders, FIFOs, a read-only and a full output folder.  Each ends in a named one-line
message (or works), with a valid ``results.csv`` and no half-written file."""
from __future__ import annotations

import csv
import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from napari_adaqat.cli import main
from napari_adaqat.io import read_mask



def radiographs(cxr_dir: Path, n: int = 1) -> list[Path]:
    return sorted((cxr_dir / "images").glob("*.png"))[:n]


def segment(*args: str | Path, nano_pth: Path) -> int:
    return main(["segment", *map(str, args), "--model", str(nano_pth), "--model-type", "vit_nano", "--device", "cpu"])


def rows_of(out: Path) -> dict[str, dict]:
    raw = (out / "results.csv").read_bytes()
    raw.decode("utf-8")  # strict: results.csv is always valid UTF-8
    with (out / "results.csv").open(newline="", encoding="utf-8") as fh:
        return {Path(r["file"]).name: r for r in csv.DictReader(fh)}


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if ".tmp" in p.name)


# ---- file names -------------------------------------------------------------------------------------


def test_a_file_name_that_is_not_utf8(tmp_path, cxr_dir, nano_pth):
    scans = tmp_path / "scans"
    scans.mkdir()
    name = os.fsdecode(b"r\xf6ntgen_\xff.png")  # Latin-1 bytes: not UTF-8
    shutil.copy(radiographs(cxr_dir)[0], scans / name)
    out = tmp_path / "out"
    assert segment(scans, "--out", out, nano_pth=nano_pth) == 0
    [row] = rows_of(out).values()
    assert row["status"] == "ok" and read_mask(out / Path(row["mask"]).name).any()
    assert leftovers(out) == []
    assert segment(scans, "--out", out, nano_pth=nano_pth) == 0  # the rerun finds it done
    assert [r["status"] for r in rows_of(out).values()] == ["ok"]


def test_a_255_byte_file_name(tmp_path, cxr_dir, nano_pth):
    scans = tmp_path / "scans"
    scans.mkdir()
    name = "x" * 251 + ".png"  # the longest name Linux allows; <name>_mask.png would be 260 bytes
    shutil.copy(radiographs(cxr_dir)[0], scans / name)
    out = tmp_path / "out"
    assert segment(scans, "--out", out, nano_pth=nano_pth) == 0
    [row] = rows_of(out).values()
    assert row["status"] == "ok" and len(Path(row["mask"]).name.encode()) <= 255
    assert read_mask(row["mask"]).any()


def test_a_long_name_never_leaves_a_broken_results_csv(tmp_path, cxr_dir, nano_pth, capsys):
    """Today: a 255-byte name may stop the run with one line; whatever happens, no broken file."""
    scans = tmp_path / "scans"
    scans.mkdir()
    shutil.copy(radiographs(cxr_dir)[0], scans / ("y" * 251 + ".png"))
    out = tmp_path / "out"
    code = segment(scans, "--out", out, nano_pth=nano_pth)
    if code == 2:
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and err.startswith("adaqat segment: error: [Errno 36] File name too long")
    if (out / "results.csv").exists():
        rows_of(out)
    assert not out.exists() or leftovers(out) == []


# ---- symbolic links, folders, FIFOs -----------------------------------------------------------------

LOOP = "symbolic link loop: the link leads back to itself; give the film's own path"  # (what to do, too)


@pytest.fixture()
def linked_folder(tmp_path, cxr_dir) -> Path:
    """scans/: one radiograph, a link loop to itself, a link to its own folder (a directory loop),
    a broken link, a folder and a FIFO with image names; sub/ holds a second radiograph."""
    scans = tmp_path / "scans"
    sub = tmp_path / "sub"
    scans.mkdir()
    sub.mkdir()
    first, second = radiographs(cxr_dir, 2)
    shutil.copy(first, scans / "chest.png")
    shutil.copy(second, sub / "other.png")
    os.symlink("self.png", scans / "self.png")
    os.symlink(".", scans / "loop")
    os.symlink("../scans", scans / "up")
    os.symlink("gone.png", scans / "dangling.png")
    os.symlink(sub, scans / "sublink")
    (scans / "folder.png").mkdir()  # a folder with an image name: skipped
    os.mkfifo(scans / "pipe.png")
    return scans


def test_symlink_loops_in_an_input_folder(linked_folder, tmp_path, nano_pth):
    """No hang (nothing recurses, a FIFO is never opened); loops with an image name are reported."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "napari_adaqat", "segment", str(linked_folder), "--out", str(out),
           "--model", str(nano_pth), "--model-type", "vit_nano", "--device", "cpu"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert result.returncode == 1, result.stderr
    rows = rows_of(out)
    assert sorted(rows) == ["chest.png", "dangling.png", "self.png"]
    assert rows["chest.png"]["status"] == "ok"
    assert rows["self.png"]["error"] == f"{linked_folder / 'self.png'}: {LOOP}"
    assert rows["dangling.png"]["error"] == f"{linked_folder / 'dangling.png'}: broken symbolic link (its target is missing)"
    assert f"{linked_folder / 'self.png'}: {LOOP}" in result.stderr


def test_links_and_folders_given_as_inputs(linked_folder, tmp_path, nano_pth):
    out = tmp_path / "out"
    assert segment(linked_folder / "sublink", "--out", out, nano_pth=nano_pth) == 0  # a link to a folder
    assert [r["status"] for r in rows_of(out).values()] == ["ok"]
    out2 = tmp_path / "out2"
    assert segment(linked_folder / "loop" / "up" / "chest.png", linked_folder / "self.png", "--out", out2,
                   nano_pth=nano_pth) == 1
    rows = rows_of(out2)
    assert rows["self.png"]["error"] == f"{linked_folder / 'self.png'}: {LOOP}"
    assert rows["chest.png"]["status"] == "ok"  # a path through the loop links still names the file


def test_a_fifo_given_as_input_is_refused_not_waited_on(linked_folder, tmp_path, nano_pth):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "napari_adaqat", "segment", str(linked_folder / "pipe.png"), "--out", str(out),
           "--model", str(nano_pth), "--model-type", "vit_nano", "--device", "cpu"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=20)  # a blocked open never returns
    assert result.returncode == 1
    assert rows_of(out)["pipe.png"]["error"] == (f"{linked_folder / 'pipe.png'}: not a regular file (a FIFO, socket or "
                                                 "device, not a film): give the film's own file")


# ---- output folders: read-only, full ------------------------------------------------------------------


def make_read_only(folder: Path) -> callable:
    """Make ``folder`` unwritable (chmod for users, chattr +i for root); return the undo, or skip."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return lambda: folder.chmod(0o755)
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("running as root without chattr +i: cannot make a folder read-only")
    return lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_read_only_output_folder(tmp_path, cxr_dir, nano_pth, capsys):
    out = tmp_path / "out"
    out.mkdir()
    undo = make_read_only(out)
    try:
        code = segment(radiographs(cxr_dir)[0], "--out", out, nano_pth=nano_pth)
        code_sub = segment(radiographs(cxr_dir)[0], "--out", out / "masks", nano_pth=nano_pth)
    finally:
        undo()
    assert code == code_sub == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2
    reason = r"\((Permission denied|Operation not permitted|Read-only file system)\)"
    assert re_full(rf"adaqat segment: error: --out {out}: cannot write there {reason}", lines[0])
    assert re_full(rf"adaqat segment: error: --out {out / 'masks'}: cannot write there {reason}", lines[1])
    assert list(out.iterdir()) == []


def re_full(pattern: str, text: str) -> bool:
    import re

    assert re.fullmatch(pattern, text), text
    return True


def test_a_full_disk_while_writing_masks(tmp_path, cxr_dir, nano_pth, monkeypatch, capsys):
    """ENOSPC half way through a mask: an error row naming the mask, no mask and no temp file left."""
    import skimage.io

    def full_disk(path, data, **kwargs):
        Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)  # part of the file got out
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(skimage.io, "imsave", full_disk)
    images = radiographs(cxr_dir, 2)
    out = tmp_path / "out"
    assert segment(*images, "--out", out, nano_pth=nano_pth) == 1
    rows = rows_of(out)
    for image in images:
        mask = out / f"{image.stem}_mask.png"
        assert rows[image.name]["status"] == "error"
        assert rows[image.name]["error"] == f"{image}: [Errno 28] No space left on device: '{mask}'"  # (names both)
    assert sorted(p.name for p in out.iterdir()) == ["results.csv"]
    assert all(line.endswith(f"No space left on device: '{out}/{image.stem}_mask.png'")
               for line, image in zip(capsys.readouterr().err.strip().splitlines(), images))


@pytest.fixture()
def tiny_tmpfs(tmp_path):
    """A 256 KiB tmpfs (root only); skipped where mounting is not allowed."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                                           capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root); the monkeypatched test covers ENOSPC")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_really_full_disk(tiny_tmpfs, cxr_dir, nano_pth, capsys):
    """A real ENOSPC: the run ends with one line; what is on the disk is complete or absent."""
    out = tiny_tmpfs / "out"
    out.mkdir()
    (tiny_tmpfs / "filler").write_bytes(b"\0" * (256 * 1024 - 12 * 1024))
    code = segment(*radiographs(cxr_dir, 4), "--out", out, nano_pth=nano_pth)
    err = capsys.readouterr().err.strip().splitlines()
    assert code in (1, 2) and any("No space left on device" in line for line in err), err
    if (out / "results.csv").exists():
        rows = rows_of(out)
        for row in rows.values():
            if row["status"] == "ok":
                assert read_mask(row["mask"]).any()
    for mask in out.glob("*_mask.png"):
        assert read_mask(mask).shape[0] == 512  # complete, never half-written
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp.png")]


@pytest.mark.parametrize("argv, line", [
    (["segment", "scans", "--out", ""], "adaqat segment: error: --out is empty (an unset shell variable?); give a value"),
    (["segment", " ", "--out", "masks"],
     "adaqat segment: error: INPUT is empty (an unset shell variable?); give a file or folder"),
    (["train", "--data", "", "--out", "run"],
     "adaqat train: error: --data is empty (an unset shell variable?); give a value"),
])
def test_an_empty_argument_is_a_usage_error_not_the_working_folder(tmp_path, monkeypatch, capsys, argv, line):
    """``--out "$OUTDIR"`` with the variable unset wrote the masks into the working folder (a QA find)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and capsys.readouterr().err.splitlines()[-1] == line
    assert list(tmp_path.iterdir()) == []
