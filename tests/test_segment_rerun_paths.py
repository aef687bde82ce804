"""Reruns of ``adaqat segment --recursive`` into one output folder from other working folders (a reviewer's
finds): a mask recorded relative to another folder is never another film's mask, and an earlier run's relative
input names are not taken for another site's films."""
from __future__ import annotations

import csv
import os
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image

from napari_adaqat.cli import main
from napari_adaqat.io import read_mask

SERIES = ("P1/S1", "P2/S1")  # both hold IM0001.png


def tree(root: Path, cxr_dir: Path, first: int = 0) -> list[Path]:
    """``root/export/P{1,2}/S1/IM0001.png``: two real films of one name; returns them."""
    films = []
    images = sorted((cxr_dir / "images").glob("*.png"))
    for i, series in enumerate(SERIES):
        (root / "export" / series).mkdir(parents=True)
        films.append(Path(shutil.copy(images[first + i], root / "export" / series / "IM0001.png")))
    return films


def segment(cwd: Path, *args: str | Path, nano_pth: Path) -> int:
    here = os.getcwd()
    os.chdir(cwd)
    try:
        return main(["segment", *map(str, args), "--recursive", "--model", str(nano_pth), "--model-type", "vit_nano",
                     "--device", "cpu", "--no-clean"])
    finally:
        os.chdir(here)


def rows_of(out: Path) -> list[dict]:
    with (out / "results.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_a_rerun_from_another_folder_keeps_each_films_own_mask(tmp_path, cxr_dir, nano_pth, capsys):
    site = tmp_path / "site"
    tree(site, cxr_dir)
    assert segment(site, site / "export", "--out", "out", nano_pth=nano_pth) == 0  # masks recorded as out/P1/...
    out = site / "out"
    first = {r["file"]: read_mask(out / Path(r["mask"]).relative_to("out")) for r in rows_of(out)}
    rows = rows_of(out)  # the 2nd film did not finish (as after a kill)
    rows[1].update(status="error", error="interrupted")
    with (out / "results.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    capsys.readouterr()
    assert segment(elsewhere, site / "export", "--out", out, nano_pth=nano_pth) == 0
    assert "1 segmented, 1 already done" in capsys.readouterr().out  # P1 is found under out/, P2 is redone

    masks = {r["mask"]: r for r in rows_of(out)}
    paths = [Path(r["mask"]) if Path(r["mask"]).is_absolute() else site / r["mask"] for r in rows_of(out)]
    assert len({p.resolve() for p in paths}) == 2, masks  # one mask per film, not one file for both
    assert sorted(str(p.resolve().relative_to(out.resolve()).parent) for p in paths) == list(SERIES)
    kept = next(r for r in rows_of(out) if r["status"] == "ok" and r["mask"].startswith("out/"))
    assert np.array_equal(read_mask(site / kept["mask"]), first[kept["file"]])  # P1's mask is P1's, untouched


def test_another_sites_tree_of_the_same_shape_is_segmented_not_skipped(tmp_path, cxr_dir, nano_pth):
    a, b = tmp_path / "a", tmp_path / "b"
    tree(a, cxr_dir, first=0)
    tree(b, cxr_dir, first=2)
    out = tmp_path / "out"
    assert segment(a, "export", "--out", out, nano_pth=nano_pth) == 0  # relative keys: export/P1/S1/IM0001.png
    assert segment(b, b / "export", "--out", out, nano_pth=nano_pth) == 0  # absolute: the same relative shape

    rows = rows_of(out)
    done_b = [r for r in rows if r["file"].startswith(str(b)) and r["status"] == "ok"]
    assert len(done_b) == 2, rows  # b's films were segmented (not taken for a's finished ones)
    assert len({r["mask"] for r in rows}) == 4  # and no mask of a's was written over


def test_a_killed_runs_temp_files_in_the_mirrored_tree_are_removed(tmp_path, cxr_dir, nano_pth):
    tree(tmp_path, cxr_dir)
    out = tmp_path / "out"
    assert segment(tmp_path, tmp_path / "export", "--out", out, nano_pth=nano_pth) == 0
    dead = 2 ** 22 + 12345  # above Linux's default pid_max: no process has it
    stale = out / "P1" / "S1" / f".IM0001_mask.png.{dead}.deadbeef.tmp.png"
    stale.write_bytes(b"half a mask")
    assert segment(tmp_path, tmp_path / "export", "--out", out, nano_pth=nano_pth) == 0
    assert not stale.exists()


def test_relative_inputs_with_an_absolute_out_resume_when_named_absolute_from_anywhere(tmp_path, cxr_dir, nano_pth,
                                                                                      capsys):
    """``cd study; adaqat segment export --out /data/out``, then the same films named by their full paths (as the
    Batch dock names them) from another folder: a resume, not a second mask of every film (results.csv's
    ``run_folder`` says what the relative names were relative to)."""
    site = tmp_path / "site"
    tree(site, cxr_dir)
    out = tmp_path / "out"
    assert segment(site, "export", "--out", out, nano_pth=nano_pth) == 0
    assert {r["run_folder"] for r in rows_of(out)} == {str(site)}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    capsys.readouterr()
    assert segment(elsewhere, site / "export", "--out", out, nano_pth=nano_pth) == 0
    assert "0 segmented, 2 already done" in capsys.readouterr().out
    assert len(rows_of(out)) == 2 and len(list(out.rglob("*_mask.png"))) == 2



def test_a_film_re_exported_after_its_mask_is_segmented_again(tmp_path, cxr_dir, nano_pth, capsys):
    """A film replaced under its name at another size (a re-export) kept its old mask, which no longer fit it
    (a QA find): a film newer than its mask is segmented again, and the run says so; the others are kept."""
    site = tmp_path / "site"
    films = tree(site, cxr_dir)
    out = tmp_path / "out"
    assert segment(site, site / "export", "--out", out, nano_pth=nano_pth) == 0
    masks = [out / series / "IM0001_mask.png" for series in SERIES]
    other_before = masks[1].read_bytes()
    film = np.asarray(Image.open(films[0]))
    Image.fromarray(np.repeat(np.repeat(film, 2, 0), 2, 1)).save(films[0])  # re-exported at twice the size
    stamp = max(m.stat().st_mtime for m in masks) + 5
    os.utime(films[0], (stamp, stamp))  # (a coarse file-system clock must not hide the change)
    capsys.readouterr()
    assert segment(site, site / "export", "--out", out, nano_pth=nano_pth) == 0
    captured = capsys.readouterr()
    assert ("1 film(s) changed after their masks were written, so they are segmented again: "
            f"{films[0]}") in captured.err, captured.err
    assert "1 segmented, 1 already done" in captured.out
    assert read_mask(masks[0]).shape == (film.shape[0] * 2, film.shape[1] * 2)
    assert masks[1].read_bytes() == other_before and len(rows_of(out)) == 2


def test_a_hand_corrected_mask_of_a_re_exported_film_is_kept_aside(tmp_path, cxr_dir, nano_pth, capsys):
    """A QA find: a site re-anonymised its export (the same pixels, another file) and the rerun overwrote the mask
    that a user had corrected by hand, with no copy. The earlier mask now goes to OUT/replaced/ (same relative name;
    numbered the second time) and the note says where."""
    site = tmp_path / "site"
    films = tree(site, cxr_dir)
    out = tmp_path / "out"
    assert segment(site, site / "export", "--out", out, nano_pth=nano_pth) == 0
    mask = out / SERIES[0] / "IM0001_mask.png"
    corrected = np.asarray(Image.open(mask)).copy()
    corrected[:40, :40] = 255  # the user's correction
    Image.fromarray(corrected).save(mask)
    for round_ in (1, 2):
        content = films[0].read_bytes()
        films[0].unlink()
        films[0].write_bytes(content + b"\0" * round_)  # re-exported: another file (size), the same film
        stamp = mask.stat().st_mtime + 5 * round_
        os.utime(films[0], (stamp, stamp))
        capsys.readouterr()
        assert segment(site, site / "export", "--out", out, nano_pth=nano_pth) == 0
        err = capsys.readouterr().err
        assert f"are kept in {out / 'replaced'}" in err, err
    kept = out / "replaced" / SERIES[0] / "IM0001_mask.png"
    np.testing.assert_array_equal(np.asarray(Image.open(kept)), corrected)
    assert (out / "replaced" / SERIES[0] / "IM0001_mask_1.png").is_file() and mask.is_file()


def test_a_film_re_exported_with_its_old_file_time_kept_is_segmented_again(tmp_path, cxr_dir, nano_pth, capsys):
    """``rsync -a`` / ``cp -p`` / a PACS export tool keep a re-exported film's old modification time, older than
    its mask: the size recorded with its mask (results.csv ``film_stamp``) says that it is another film."""
    site = tmp_path / "site"
    films = tree(site, cxr_dir)
    out = tmp_path / "out"
    assert segment(site, site / "export", "--out", out, nano_pth=nano_pth) == 0
    masks = [out / series / "IM0001_mask.png" for series in SERIES]
    film = np.asarray(Image.open(films[0]))
    old = films[0].stat().st_mtime
    time.sleep(0.05)
    Image.fromarray(np.repeat(np.repeat(film, 2, 0), 2, 1)).save(films[0])  # re-exported at twice the size
    os.utime(films[0], (old, old))  # ... with the first export's time kept
    assert films[0].stat().st_mtime < masks[0].stat().st_mtime
    capsys.readouterr()
    assert segment(site, site / "export", "--out", out, nano_pth=nano_pth) == 0
    captured = capsys.readouterr()
    assert "1 film(s) changed after their masks were written" in captured.err, captured.err
    assert "1 segmented, 1 already done" in captured.out
    assert read_mask(masks[0]).shape == (film.shape[0] * 2, film.shape[1] * 2)


def test_films_restored_with_their_file_times_kept_are_not_segmented_again(tmp_path, cxr_dir, nano_pth, capsys):
    """Films copied back in place with their times kept (a restore from backup with ``rsync -a`` or ``cp -a``: new
    status change times, the same size and modification time): the same films, so nothing is segmented again,
    and a mask corrected by hand in the output folder stays as it is."""
    site = tmp_path / "site"
    films = tree(site, cxr_dir)
    out = tmp_path / "out"
    assert segment(site, site / "export", "--out", out, nano_pth=nano_pth) == 0
    assert all(row["film_stamp"] for row in rows_of(out))
    mask = out / SERIES[0] / "IM0001_mask.png"
    corrected = np.zeros(read_mask(mask).shape, dtype=np.uint8)
    corrected[10:50, 10:50] = 255
    Image.fromarray(corrected).save(mask)  # corrected by hand
    backup = tmp_path / "backup"
    shutil.copytree(site, backup)  # (copy2: times kept)
    time.sleep(0.05)
    for film in films:
        film.unlink()
        shutil.copy2(backup / film.relative_to(site), film)  # restored: new inode and status change time
    capsys.readouterr()
    assert segment(site, site / "export", "--out", out, nano_pth=nano_pth) == 0
    captured = capsys.readouterr()
    assert "0 segmented, 2 already done" in captured.out and "changed" not in captured.err, captured.err
    assert np.array_equal(read_mask(mask), corrected > 0)


def test_what_a_run_passes_over_is_listed_in_skipped_csv(tmp_path, cxr_dir, nano_pth, capsys):
    """A QA find: a site audits an archive from its output folder, but the files a run passed over (a ZIP, a mask
    beside its film, a folder of masks...) were named only on the terminal, cut after three. They are listed in
    OUT/skipped.csv, each with what it is; a skipped.csv that is not adaqat's is left as it is."""
    site = tmp_path / "site"
    films = tree(site, cxr_dir)
    series = films[0].parent
    shutil.copy(films[0], series / "IM0001_mask.png")  # (named as its mask)
    (series / "films.zip").write_bytes(b"PK\x03\x04" + b"\0" * 40)
    (series / "notes.txt").write_text("done")
    out = tmp_path / "out"
    assert segment(site, site / "export", "--out", out, nano_pth=nano_pth) == 0
    assert "(all 3 will be listed in" in capsys.readouterr().err
    with (out / "skipped.csv").open(newline="", encoding="utf-8") as fh:
        rows = {Path(row["file"]).name: row["what"] for row in csv.DictReader(fh)}
    assert rows == {"IM0001_mask.png": "a mask beside its film (NAME_mask beside NAME): not segmented",
                    "films.zip": "not an image adaqat reads", "notes.txt": "not an image adaqat reads"}
    assert len(rows_of(out)) == 2
    (series / "films.zip").unlink()
    (series / "notes.txt").unlink()
    (series / "IM0001_mask.png").unlink()
    assert segment(site, site / "export", "--out", out, nano_pth=nano_pth) == 0  # nothing skipped: this run's list
    assert not (out / "skipped.csv").exists()  # (no stale list of an earlier run)
    theirs = "file,why\nmine,kept\n"
    (out / "skipped.csv").write_text(theirs)
    (series / "notes.txt").write_text("done")  # skipped again
    assert segment(site, site / "export", "--out", out, nano_pth=nano_pth) == 0
    assert "skipped.csv is not adaqat's" in capsys.readouterr().err
    assert (out / "skipped.csv").read_text() == theirs


def test_an_output_folder_holding_films_is_warned_of(tmp_path, cxr_dir, nano_pth, capsys):
    """A QA find: --out into a folder of films was taken without a word; once it held results.csv, a recursive run
    over the folder above passed over it as a folder of masks, its films with it."""
    site = tmp_path / "site"
    films = tree(site, cxr_dir)
    out = tmp_path / "filmsB"
    out.mkdir()
    shutil.copy(films[1], out / "other.png")
    assert segment(site, films[0], "--out", out, nano_pth=nano_pth) == 0
    assert f"warning: {out} holds films (other.png)" in capsys.readouterr().err
    clean = tmp_path / "masks"
    for _ in range(2):  # its own masks are no films: no warning, the second time either
        assert segment(site, films[0], "--out", clean, nano_pth=nano_pth) == 0
        assert "holds films" not in capsys.readouterr().err


def test_a_mask_kept_aside_never_takes_a_name_this_run_writes_nor_is_lost_when_it_cannot_move(tmp_path, monkeypatch):
    """Review finds: an input sub-folder named replaced/ gets its masks in OUT/replaced/, where a kept-aside mask
    would have gone and then been overwritten; a move that fails (a locked file) must keep the mask, not stop."""
    from napari_adaqat.inference import batch

    out = tmp_path / "out"
    (out / "replaced").mkdir(parents=True)
    (out / "a_mask.png").write_bytes(b"corrected by hand")
    names = {"a": "a_mask.png", "b": "replaced/a_mask.png"}  # (b: a film in an input folder named replaced/)
    kept, stuck = batch._put_aside(out, ["a"], names)
    assert kept == ["a_mask_1.png"] and stuck == {}
    assert (out / "replaced" / "a_mask_1.png").read_bytes() == b"corrected by hand"
    (out / "a_mask.png").write_bytes(b"again")

    def locked(*_args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(batch.os, "replace", locked)
    assert batch._put_aside(out, ["a"], names) == ([], {"a": "Permission denied"})
    assert (out / "a_mask.png").read_bytes() == b"again"


def test_numbered_masks_in_an_output_folder_are_no_films(tmp_path, cxr_dir):
    """A review find: masks numbered where NAME_mask was taken (SE1_IM0001_mask_2.png) counted as films."""
    from napari_adaqat.data.folders import films_in_output

    film = sorted((cxr_dir / "images").glob("*.png"))[0]
    for name in ("SE1_IM0001_mask_2.png", "a_mask.png", "b_seg_3.png", "film.png"):
        shutil.copy(film, tmp_path / name)
    assert [p.name for p in films_in_output(tmp_path)] == ["film.png"]
