"""Archive folders as hospitals export them, through the real ``adaqat segment``: a PACS tree of extension-less
DICOM files of one name in many folders (``--recursive``: masks mirror the tree, a rerun resumes), films with
their masks beside them under any suffix training pairs, an earlier output inside the tree, missing inputs."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

import napari_adaqat.cli.segment_cmd as segment_cmd
from napari_adaqat.cli import main
from napari_adaqat.data.dataset import MASK_SUFFIXES, find_mask
from napari_adaqat.data.folders import scan_inputs
from test_dicom import make_dicom  # tests/ is on sys.path (pytest rootdir-less import)

SERIES = ["P001/ST1/SE1", "P001/ST1/SE2", "P002/ST1/SE1"]  # every series holds IM0001 and IM0002


def film(cxr_dir: Path, i: int = 0) -> np.ndarray:
    """A real radiograph, 12-bit, 96x96 (uint16)."""
    from PIL import Image

    path = sorted((cxr_dir / "images").glob("*.png"))[i % 4]
    return np.asarray(Image.open(path).convert("L").resize((96, 96))).astype(np.uint16) * 16


def pacs_export(root: Path, cxr_dir: Path) -> list[Path]:
    """``root/PATIENT/STUDY/SERIES/IM000N`` (extension-less DICOM) + a DICOMDIR-like index and a PNG study with
    its ``_seg`` mask beside it; returns the films, in the order a recursive scan lists them."""
    films = []
    for s, series in enumerate(SERIES):
        (root / series).mkdir(parents=True)
        for i in (1, 2):
            films.append(make_dicom(root / series / f"IM{i:04d}", film(cxr_dir, s + i), bits_stored=12))
    (root / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM")  # not a film: listed among the skipped files
    png = root / "P003" / "photos"
    png.mkdir(parents=True)
    shutil.copy(sorted((cxr_dir / "images").glob("*.png"))[0], png / "a.png")
    shutil.copy(sorted((cxr_dir / "masks").glob("*.png"))[0], png / "a_seg.png")  # its mask: not a film
    return films + [png / "a.png"]


def segment(*args: str | Path, nano_pth: Path) -> int:
    return main(["segment", *map(str, args), "--model", str(nano_pth), "--model-type", "vit_nano", "--device", "cpu"])


def rows_of(out: Path) -> dict[str, dict]:
    with (out / "results.csv").open(newline="", encoding="utf-8") as fh:
        return {r["file"]: r for r in csv.DictReader(fh)}


class CountingBar:
    """tqdm as segment_cmd uses it, recording the total the segment bar was given and its updates (and, apart, the
    files the scan's bar counted)."""
    totals: list[int] = []
    done = 0
    looked_at = 0

    def __init__(self, total: int | None = None, desc: str = "", **_kw) -> None:
        self.scan = desc == "looking through"
        if not self.scan:
            CountingBar.totals.append(total)

    def update(self, n: int) -> None:
        if self.scan:
            CountingBar.looked_at += n
        else:
            CountingBar.done += n

    def close(self) -> None:
        pass

    write = staticmethod(lambda text, file=None: print(text, file=file))


def test_a_pacs_tree_is_segmented_into_a_mirror_of_it_and_a_rerun_resumes(tmp_path, cxr_dir, nano_pth, capsys,
                                                                          monkeypatch):
    export = tmp_path / "export"
    films = pacs_export(export, cxr_dir)
    out = tmp_path / "masks"
    monkeypatch.setattr(segment_cmd, "tqdm", CountingBar)
    CountingBar.totals, CountingBar.done, CountingBar.looked_at = [], 0, 0
    assert segment(export, "-r", "--out", out, nano_pth=nano_pth) == 0
    assert CountingBar.totals == [7] and CountingBar.done == 7  # the bar counts every file of the tree
    assert CountingBar.looked_at == 18  # the scan's: 10 files + DICOMDIR + 7 folders (P001 ST1 SE1 SE2 P002...)
    rows = rows_of(out)
    assert list(rows) == [str(p) for p in films]  # keyed by the path under the input folder, in tree order
    for path in films:
        relative = path.relative_to(export)
        mask = out / relative.parent / f"{path.stem if path.suffix else path.name}_mask.png"
        assert rows[str(path)]["status"] == "ok" and Path(rows[str(path)]["mask"]) == mask
        assert mask.is_file() and find_mask(path, mask.parent) == mask  # evaluate's pairing, folder by folder
    assert len({Path(r["mask"]) for r in rows.values()}) == 7  # six files named IM0001/IM0002: no collision
    err = capsys.readouterr().err
    assert "1 mask beside its film (NAME_seg beside NAME), not segmented: a_seg.png" in err
    assert "DICOMDIR, an export's index" in err

    (out / "P001" / "ST1" / "SE2" / "IM0002_mask.png").unlink()  # one mask lost: only it is redone
    masks = {p: p.read_bytes() for p in out.rglob("*_mask.png")}
    assert segment(export, "--recursive", "--out", out, nano_pth=nano_pth) == 0
    assert "1 segmented, 6 already done, 0 failed" in capsys.readouterr().out
    assert all(p.read_bytes() == data for p, data in masks.items())
    assert list(rows_of(out)) == [str(p) for p in films] and len(list(out.rglob("*_mask.png"))) == 7


def test_a_rerun_resumes_whichever_way_the_folder_is_named(tmp_path, cxr_dir, nano_pth, capsys, monkeypatch):
    """A terminal's run names the files relative (``export/P001/...``), the Batch dock absolute: a rerun the
    other way finishes what is missing and keeps one row per file, not a second mask of every film."""
    films = pacs_export(tmp_path / "export", cxr_dir)
    monkeypatch.chdir(tmp_path)
    assert segment("export", "-r", "--out", "masks", nano_pth=nano_pth) == 0
    out = tmp_path / "masks"
    (out / "P002" / "ST1" / "SE1" / "IM0001_mask.png").unlink()
    capsys.readouterr()
    assert segment(tmp_path / "export", "-r", "--out", out, nano_pth=nano_pth) == 0
    assert "1 segmented, 6 already done, 0 failed" in capsys.readouterr().out
    rows = rows_of(out)
    assert list(rows) == [str(p.relative_to(tmp_path)) for p in films]  # the first run's names, one row each
    assert rows["export/P002/ST1/SE1/IM0001"]["mask"] == str(out / "P002" / "ST1" / "SE1" / "IM0001_mask.png")
    assert len(list(out.rglob("*_mask.png"))) == 7


def test_an_earlier_output_inside_the_tree_is_not_segmented_and_out_inside_it_is_refused(tmp_path, cxr_dir,
                                                                                         nano_pth, capsys):
    export = tmp_path / "export"
    films = pacs_export(export, cxr_dir)
    earlier = tmp_path / "earlier"
    assert segment(export / "P001", "-r", "--out", earlier, nano_pth=nano_pth) == 0
    shutil.move(earlier, export / "P001" / "adaqat-masks")  # someone kept the masks with the films
    capsys.readouterr()
    assert segment(export, "-r", "--out", export / "masks", nano_pth=nano_pth) == 2  # nothing into the input
    assert "inside the input folder" in capsys.readouterr().err and not (export / "masks").exists()
    out = tmp_path / "out"
    assert segment(export, "-r", "--out", out, nano_pth=nano_pth) == 0
    assert list(rows_of(out)) == [str(p) for p in films]  # none of the earlier masks is segmented as a film
    assert "1 folder of masks (an adaqat output with its results.csv" in capsys.readouterr().err
    assert not (out / "P001" / "adaqat-masks").exists()


def test_without_recursive_a_tree_says_use_recursive_and_nothing_is_written(tmp_path, cxr_dir, nano_pth, capsys):
    export = tmp_path / "export"
    pacs_export(export, cxr_dir)
    (export / "DICOMDIR").unlink()
    out = tmp_path / "out"
    assert segment(export, "--out", out, nano_pth=nano_pth) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"adaqat segment: error: no image files found in {export} (a folder): 3 sub-folders, not looked "
                   "into (use --recursive to segment the films in them): P001, P002, P003"]
    assert not out.exists()
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)  # no films below: the hint would not help
    assert segment(empty, "--out", out, nano_pth=nano_pth) == 2
    assert "(choose the folder of the films itself): sub" in capsys.readouterr().err
    cd = tmp_path / "cd"  # a CD export: DICOMDIR beside PT000000/...: what to do comes first
    make_dicom((cd / "PT000000" / "ST000000").mkdir(parents=True) or cd / "PT000000" / "ST000000" / "IM000000",
               film(cxr_dir), bits_stored=12)
    (cd / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM")
    assert segment(cd, "--out", out, nano_pth=nano_pth) == 2
    assert capsys.readouterr().err.startswith(f"adaqat segment: error: no image files found in {cd} (a folder): 1 "
                                              "sub-folder, not looked into (use --recursive to segment the films in "
                                              "them): PT000000;")


@pytest.mark.parametrize("suffix", MASK_SUFFIXES)
def test_a_films_mask_beside_it_under_any_training_suffix_is_not_a_film(tmp_path, cxr_dir, suffix):
    folder = tmp_path / "films"
    folder.mkdir()
    image = sorted((cxr_dir / "images").glob("*.png"))[0]
    shutil.copy(image, folder / "a.png")
    shutil.copy(cxr_dir / "masks" / image.name, folder / f"A{suffix.upper()}.png")  # any case
    shutil.copy(image, folder / f"b{suffix}.png")  # no film b beside it: a film
    files, skipped = scan_inputs([folder])
    assert [p.name for p in files] == sorted(["a.png", f"b{suffix}.png"])
    assert skipped == [folder / f"A{suffix.upper()}.png"]


def test_missing_inputs_get_an_error_row_each_and_the_rest_is_segmented(tmp_path, cxr_dir, nano_pth, capsys):
    """The same rule as the Batch dock (test_napari_batch_recursive.py): nothing the user chose is dropped."""
    folder = tmp_path / "films"
    folder.mkdir()
    image = shutil.copy(sorted((cxr_dir / "images").glob("*.png"))[0], folder / "a.png")
    gone = tmp_path / "moved_away.png"
    out = tmp_path / "out"
    assert segment(folder, gone, "--out", out, nano_pth=nano_pth) == 1
    rows = rows_of(out)
    assert rows[str(image)]["status"] == "ok" and rows[str(gone)]["status"] == "error"
    assert "not found" in rows[str(gone)]["error"] or "No such file" in rows[str(gone)]["error"]
    err = capsys.readouterr().err
    assert f"1 input(s) not found, each gets an error row in results.csv and the others are segmented: {gone}" in err
    assert segment(gone, tmp_path / "typo", "--out", tmp_path / "o2", nano_pth=nano_pth) == 2  # none there
    assert "no such file or folder (and 1 more inputs); nothing was written" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()


def test_help_teaches_recursive_with_an_example(capsys):
    with pytest.raises(SystemExit):
        main(["segment", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "-r, --recursive" in text and "adaqat segment export/ --recursive --out masks/" in text
    assert "masks/PATIENT/STUDY/SERIES/IM0001_mask.png" in text


def junk_tree(root: Path, per_folder: int = 20) -> int:
    """Two series of extension-less files that are not DICOM (each opened to look): the entries a scan looks at."""
    for series in ("P001/SE1", "P002/SE1"):
        (root / series).mkdir(parents=True)
        for i in range(per_folder):
            (root / series / f"IM{i:04d}").write_bytes(b"\0" * 64 + b"not DICOM")
    return 4 + 2 * per_folder  # P001 P002 SE1 SE1 + the files


def test_the_scan_of_a_tree_counts_the_files_on_a_terminal_and_says_nothing_into_a_pipe(tmp_path, capsys,
                                                                                      monkeypatch):
    """Before, a big tree's scan was silent until the segment bar (minutes on a share of a PACS export)."""
    entries = junk_tree(tmp_path / "export")
    bars: list[dict] = []

    class Bar:  # tqdm as _scan calls it
        def __init__(self, **kw) -> None:
            self.kw, self.n, self.closed = kw, 0, False
            bars.append(self.__dict__)

        def update(self, n: int) -> None:
            self.n += n

        def close(self) -> None:
            self.closed = True

    monkeypatch.setattr(segment_cmd, "tqdm", Bar)
    assert main(["segment", str(tmp_path / "export"), "-r", "--out", str(tmp_path / "out")]) == 2  # no films
    assert [(b["kw"]["desc"], b["n"], b["closed"]) for b in bars] == [("looking through", entries, True)]
    assert bars[0]["kw"]["disable"] is None and bars[0]["kw"]["leave"] is False  # a terminal only, as the segment bar
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["segment", str(tmp_path / "export"), "-r", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err  # (not a terminal)
    assert "looking through" not in err and err.startswith("adaqat segment: error: no image files found")


def test_a_terminal_sees_the_scan_count(tmp_path):
    """The real CLI on a pseudo-terminal: the scan's line shows, then goes, before the one-line error."""
    import os
    import struct
    import subprocess
    import sys

    fcntl, pty, termios = (pytest.importorskip(name) for name in ("fcntl", "pty", "termios"))  # (POSIX)

    junk_tree(tmp_path / "export", per_folder=300)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # (tqdm draws nothing 0 wide)
    proc = subprocess.Popen([sys.executable, "-m", "napari_adaqat.cli", "segment", str(tmp_path / "export"), "-r",
                             "--out", str(tmp_path / "out")], stderr=slave, stdout=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert proc.wait(timeout=120) == 2
    os.close(master)
    text = b"".join(chunks).decode(errors="replace")
    assert "looking through: " in text and " files" in text and "no image files found" in text
