"""How ``adaqat segment --recursive`` meets hospital trees (a reviewer's finds): a CSV row named by a film's name
that fits a film in every series is refused (a path relative to the input folder, or the full path, names one
film), an unreadable sub-folder is listed and the rest segmented, two sites' trees of one shape stay two
mirrors, and the skipped entries are described from what the scan decided, without opening them again."""
from __future__ import annotations

import csv
import errno
import os
import shutil
from pathlib import Path

import numpy as np

import napari_adaqat.data.folders as folders
from napari_adaqat.cli import main
from napari_adaqat.data import describe_skipped, read_points_csv, scan_inputs
from napari_adaqat.data.csv_match import match_rows
from napari_adaqat.data.folders import mirror_folder, root_labels

SERIES = ("P1/S1", "P2/S1")  # both hold IM0001.png


def tree(root: Path, cxr_dir: Path, first: int = 0) -> list[Path]:
    """``root/P{1,2}/S1/IM0001.png``: two real films of one name; returns them."""
    images = sorted((cxr_dir / "images").glob("*.png"))
    films = []
    for i, series in enumerate(SERIES):
        (root / series).mkdir(parents=True)
        films.append(Path(shutil.copy(images[first + i], root / series / "IM0001.png")))
    return films


def segment(*args: str | Path, nano_pth: Path) -> int:
    return main(["segment", *map(str, args), "--recursive", "--model", str(nano_pth), "--model-type", "vit_nano",
                 "--device", "cpu", "--no-clean"])


def rows_of(out: Path) -> dict[str, dict]:
    with (out / "results.csv").open(newline="", encoding="utf-8") as fh:
        return {r["file"]: r for r in csv.DictReader(fh)}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_name_row_that_fits_a_film_in_every_series_is_refused_before_anything_is_written(tmp_path, cxr_dir,
                                                                                          nano_pth, capsys):
    tree(tmp_path / "export", cxr_dir)
    out = tmp_path / "out"
    for option, text in (("--boxes", "file,x0,y0,x1,y1\nIM0001,10,10,200,200\n"),
                         ("--points", "file,x,y,label\nIM0001.png,100,100,1\n")):
        csv_path = write(tmp_path / "prompts.csv", text)
        assert segment(tmp_path / "export", "--out", out, option, csv_path, nano_pth=nano_pth) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert "names 2 input files" in err and "IM0001" in err, err
        assert "relative to the input folder (e.g. P1/S1/IM0001.png)" in err and "full path" in err, err
        assert not out.exists()  # refused before the run began


def test_a_path_relative_to_the_input_folder_or_a_full_path_names_one_film(tmp_path, cxr_dir, nano_pth, capsys):
    films = tree(tmp_path / "export", cxr_dir)
    boxes = write(tmp_path / "boxes.csv", f"file,x0,y0,x1,y1\nP1/S1/IM0001,10,10,200,200\n{films[1]},20,20,300,300\n")
    out = tmp_path / "out"
    assert segment(tmp_path / "export", "--out", out, "--boxes", boxes, nano_pth=nano_pth) == 0
    assert "name no input" not in capsys.readouterr().err
    rows = rows_of(out)
    assert [rows[str(f)]["box"] for f in films] == ["10.0 10.0 200.0 200.0", "20.0 20.0 300.0 300.0"], rows

    points = read_points_csv(write(tmp_path / "points.csv", "P2/S1/IM0001.png,5,6,1\nP1/S1/IM0001.png,7,8,0\n"))
    found = match_rows("points.csv", points, films, [tmp_path / "export"])
    assert found[str(films[0])][0].tolist() == [[7, 8]] and found[str(films[1])][0].tolist() == [[5, 6]]


def test_an_unreadable_sub_folder_is_listed_and_the_rest_is_segmented(tmp_path, cxr_dir, nano_pth, capsys,
                                                                      monkeypatch):
    films = tree(tmp_path / "export", cxr_dir)
    locked = tmp_path / "export" / "P2"
    listing, stat = Path.iterdir, os.stat

    def iterdir(self):
        if self == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return listing(self)

    def no_stat(path, *args, **kwargs):  # what root does not see: a 0o000 folder's entries cannot be looked at
        if locked in Path(os.fsdecode(path)).parents:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    monkeypatch.setattr(os, "stat", no_stat)
    out = tmp_path / "out"
    assert segment(tmp_path / "export", "--out", out, nano_pth=nano_pth) == 0
    err = capsys.readouterr().err
    assert f"1 sub-folder that cannot be read (permission denied): {locked}" in err, err
    assert list(rows_of(out)) == [str(films[0])]

    locked = tmp_path / "export"  # an input folder that cannot be listed still fails, one line
    assert segment(locked, "--out", tmp_path / "out2", nano_pth=nano_pth) == 2
    assert "Permission denied" in capsys.readouterr().err


def test_two_sites_trees_of_one_shape_are_mirrored_each_under_its_own_folder(tmp_path, cxr_dir, nano_pth):
    a, b = tmp_path / "siteA" / "export", tmp_path / "siteB" / "export"
    tree(a, cxr_dir, first=0)
    tree(b, cxr_dir, first=2)
    out = tmp_path / "masks"
    assert segment(a, b, "--out", out, nano_pth=nano_pth) == 0
    masks = sorted(str(p.relative_to(out)) for p in out.rglob("*_mask.png"))
    assert masks == [f"{site}/{s}/IM0001_mask.png" for site in ("export", "export_2") for s in SERIES], masks

    assert root_labels([a, Path(str(a) + "/"), tmp_path / "Export", b]) == {a: "export", tmp_path / "Export":
                                                                           "Export_2", b: "export_3"}
    assert mirror_folder(a / "P1" / "S1" / "x.png", [a]) == Path("P1/S1")  # one root: as before


def test_an_output_folder_whose_mirrors_would_be_the_input_folders_is_refused(tmp_path, cxr_dir, nano_pth,
                                                                              monkeypatch, capsys):
    """``adaqat segment scans other -r --out .`` mirrors each tree under ./scans and ./other: the input folders
    themselves (a QA find). Refused before anything is read; a single root may still write to its parent."""
    scans, other = tmp_path / "scans", tmp_path / "other"
    tree(scans, cxr_dir, first=0)
    tree(other, cxr_dir, first=2)
    monkeypatch.chdir(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert segment("scans", "other", "--out", ".", nano_pth=nano_pth) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"adaqat segment: error: --out . would put the masks of scans in {scans}, the input folder {scans} "
                   "(several input folders each get a folder of their name there); choose another folder"], err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written
    assert segment("scans", "--out", ".", nano_pth=nano_pth) == 0  # one root: ./P1/S1/IM0001_mask.png
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.glob("P*/S1/*_mask.png")) == [
        f"{s}/IM0001_mask.png" for s in SERIES]


def test_a_row_naming_the_film_by_another_spelling_of_its_path_is_its_row(tmp_path, cxr_dir, monkeypatch):
    """``./nas/scans/a.png`` (as ``find .`` writes it) and the real path of a film given through a symbolic link
    name that film (a QA find: both were ignored, and the film got the default box)."""
    films = tree(tmp_path / "nas", cxr_dir)
    (tmp_path / "link").symlink_to(tmp_path / "nas")
    monkeypatch.chdir(tmp_path)
    given = [Path("link") / f.relative_to(tmp_path / "nas") for f in films]  # the films through the link
    rows = {"./link/P1/S1/IM0001.png": "dotted", str(films[1]): "real path"}
    found = match_rows("boxes.csv", rows, given)
    assert found == {os.path.abspath(given[0]): "dotted", os.path.abspath(given[1]): "real path"}


def test_two_films_linked_to_one_content_file_stay_two_films(tmp_path, cxr_dir, monkeypatch):
    """git-annex, DVC and the Hugging Face cache keep films as links to shared content: a row naming one of two
    identical films is that one's only (the file's own link is not resolved, its folder's is)."""
    content = tmp_path / "store" / "blob"
    content.parent.mkdir()
    shutil.copy(sorted((cxr_dir / "images").glob("*.png"))[0], content)
    (tmp_path / "films").mkdir()
    films = [tmp_path / "films" / name for name in ("a.png", "b.png")]
    for film in films:
        film.symlink_to(content)
    monkeypatch.chdir(tmp_path)
    given = [Path("films/a.png"), Path("films/b.png")]
    assert match_rows("boxes.csv", {"films/a.png": "a's box"}, given) == {os.path.abspath(given[0]): "a's box"}
    assert match_rows("boxes.csv", {str(films[1]): "b's box"}, given) == {os.path.abspath(given[1]): "b's box"}


def test_the_skipped_entries_are_described_from_the_scan_without_opening_them_again(tmp_path, cxr_dir,
                                                                                   monkeypatch):
    folder = tmp_path / "scans"
    folder.mkdir()
    images = sorted((cxr_dir / "images").glob("*.png"))
    shutil.copy(images[0], folder / "a.png")
    shutil.copy(images[1], folder / "a_mask.png")  # a film's mask beside it
    (folder / "notes").write_bytes(b"not DICOM")  # extension-less: opened once to look for DICOM
    (folder / "P1").mkdir()
    (folder / "done").mkdir()
    (folder / "done" / "results.csv").write_text("file,status,mask\n")  # an earlier output
    files, skipped = scan_inputs([folder])
    assert files == [folder / "a.png"] and isinstance(skipped, list)
    expected = describe_skipped(list(skipped))  # a plain list: looked at on disk, as before

    def no(*_args, **_kwargs):
        raise AssertionError("describe_skipped looked at the disk again")

    monkeypatch.setattr(folders, "is_image_file", no)
    monkeypatch.setattr(folders, "is_mask_folder", no)
    for name in ("is_dir", "is_file", "is_symlink", "open"):
        monkeypatch.setattr(Path, name, no)
    assert describe_skipped(skipped) == expected
    assert "1 mask beside its film" in expected and "(no extension" in expected and "of masks" in expected
    assert np.all([p in skipped for p in (folder / "P1", folder / "notes", folder / "a_mask.png")])
