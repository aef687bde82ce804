import csv
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from napari_adaqat.cli import main
from napari_adaqat.io import read_mask


def _snapshot(folder: Path) -> dict:
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture()
def input_folder(tmp_path, cxr_dir):
    folder = tmp_path / "scans"
    folder.mkdir()
    for path in sorted((cxr_dir / "images").glob("*.png"))[:3]:
        shutil.copy(path, folder / path.name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return folder


def _rows(out: Path) -> list[dict]:
    with (out / "results.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_segment_folder_with_a_corrupt_file(input_folder, tmp_path, nano_pth, capsys):
    before = _snapshot(input_folder)
    out = tmp_path / "masks"
    args = [str(input_folder), "--out", str(out), "--model", str(nano_pth), "--model-type", "vit_nano", "--device", "cpu"]
    code = main(["segment", *args])
    assert code != 0
    rows = _rows(out)
    assert [r["status"] for r in rows].count("ok") == 3
    errors = [r for r in rows if r["status"] == "error"]
    assert len(errors) == 1 and "broken.png" in errors[0]["file"] and errors[0]["error"]
    assert set(rows[0]) >= {"file", "status", "error", "box", "area_px", "seconds"}
    masks = sorted(out.glob("*_mask.png"))
    assert len(masks) == 3
    for row in rows:
        if row["status"] == "ok":
            mask = read_mask(row["mask"])
            assert mask.shape[0] > 100 and int(row["area_px"]) == int(mask.sum())
    err = capsys.readouterr().err
    assert "broken.png" in err
    assert _snapshot(input_folder) == before  # nothing written into the input folder
    stamps = {m.name: m.stat().st_mtime_ns for m in masks}
    code = main(["segment", *args])  # rerun: the 3 finished files are skipped
    assert code != 0
    assert {m.name: m.stat().st_mtime_ns for m in sorted(out.glob("*_mask.png"))} == stamps
    assert "3 already done" in capsys.readouterr().out
    assert _snapshot(input_folder) == before


def test_boxes_csv_and_refusal_to_write_into_inputs(input_folder, tmp_path, nano_pth, capsys):
    first = sorted(input_folder.glob("covid*.png"))[0]
    boxes = tmp_path / "boxes.csv"
    boxes.write_text(f"file,x0,y0,x1,y1\n{first.name},10,20,200,300\n")
    out = tmp_path / "out"
    code = main(["segment", str(first), "--out", str(out), "--boxes", str(boxes), "--model", str(nano_pth),
                 "--model-type", "vit_nano"])
    assert code == 0
    assert _rows(out)[0]["box"] == "10.0 20.0 200.0 300.0"
    code = main(["segment", str(input_folder), "--out", str(input_folder / "sub"), "--model", str(nano_pth),
                 "--model-type", "vit_nano"])
    assert code == 2
    assert "inside the input folder" in capsys.readouterr().err
    assert not (input_folder / "sub").exists()


def test_same_file_names_from_different_folders_never_overwrite_a_mask(cxr_dir, tmp_path, nano_pth, capsys):
    src = sorted((cxr_dir / "images").glob("*.png"))
    for folder, image in (("a", src[0]), ("b", src[1]), ("c/b", src[2])):
        (tmp_path / folder).mkdir(parents=True)
        shutil.copy(image, tmp_path / folder / "x.png")
    out = tmp_path / "out"
    model = ["--model", str(nano_pth), "--model-type", "vit_nano"]
    assert main(["segment", str(tmp_path / "a" / "x.png"), "--out", str(out), *model]) == 0
    first_mask = (out / "x_mask.png").read_bytes()
    # a later run with another x.png, then one run with two more whose parents share a name
    capsys.readouterr()
    assert main(["segment", str(tmp_path / "b" / "x.png"), "--out", str(out), *model]) == 0
    assert "1 mask(s) are named after their film's folder too (e.g. b_x_mask.png): NAME_mask was already taken" \
        in capsys.readouterr().out  # QA9: the rule held, but silently
    assert main(["segment", str(tmp_path / "b" / "x.png"), str(tmp_path / "c" / "b" / "x.png"), "--out", str(out),
                 *model]) == 0
    rows = _rows(out)
    masks = [Path(r["mask"]).name for r in rows]
    assert len(rows) == 3 and len(set(masks)) == 3, masks
    assert (out / "x_mask.png").read_bytes() == first_mask
    assert [r["status"] for r in rows] == ["ok", "ok", "ok"]
    assert main(["segment", str(tmp_path / "a" / "x.png"), "--out", str(out), *model]) == 0
    assert _rows(out)[0]["status"] == "ok" and (out / "x_mask.png").read_bytes() == first_mask  # skipped


def test_films_of_one_name_in_one_folder_get_masks_that_name_their_extension(cxr_dir, tmp_path, nano_pth):
    """chest.png, chest.tif and chest.jpg in one folder (a QA find: chest_mask, scans_chest_mask, scans_chest_mask_2
    said nothing of which film each mask was); a film alone of its name keeps NAME_mask."""
    from skimage.io import imread, imsave

    scans = tmp_path / "scans"
    scans.mkdir()
    film = sorted((cxr_dir / "images").glob("*.png"))[0]
    shutil.copy(film, scans / "chest.png")
    imsave(scans / "chest.tif", imread(film), check_contrast=False)
    imsave(scans / "chest.jpg", imread(film), check_contrast=False, quality=95)
    shutil.copy(film, scans / "other.png")
    out = tmp_path / "out"
    assert main(["segment", str(scans), "--out", str(out), "--model", str(nano_pth), "--model-type", "vit_nano"]) == 0
    masks = {Path(r["file"]).name: Path(r["mask"]).name for r in _rows(out)}
    assert masks == {"chest.png": "chest_png_mask.png", "chest.tif": "chest_tif_mask.png",
                     "chest.jpg": "chest_jpg_mask.png", "other.png": "other_mask.png"}


def test_a_film_named_like_a_namesakes_extended_name_keeps_its_own(tmp_path):
    """chest.png, chest.dcm and chest_png.png (a review find: chest.png took chest_png_mask, and chest_png.png got
    scans_chest_png_mask); an extension-less DICOM export's last UID part is no extension."""
    from napari_adaqat.inference.mask_names import mask_names

    scans = tmp_path / "scans"
    files = [scans / n for n in ("chest.png", "chest.dcm", "chest_png.png", "1.2.840.4", "1.2.840.4.dcm")]
    names, kept = mask_names(files, {}, tmp_path / "out", ".png")
    assert [names[str(f)] for f in files] == ["chest_mask.png", "chest_dcm_mask.png", "chest_png_mask.png",
                                              "1.2.840.4_mask.png", "1.2.840.4_dcm_mask.png"]
    assert kept == set()


def test_names_that_differ_only_in_case_get_masks_that_do_not(tmp_path):
    """chest and CHEST.DCM (a QA find: chest_mask.png and CHEST_mask.png are one file on a macOS, Windows or SMB
    disk, so the second mask would replace the first there)."""
    from napari_adaqat.inference.mask_names import mask_names

    files = [tmp_path / "scans" / n for n in ("chest", "CHEST.DCM", "Chest.png")]
    names, _ = mask_names(files, {}, tmp_path / "out", ".png")
    assert [names[str(f)] for f in files] == ["chest_mask.png", "scans_CHEST_mask.png", "scans_Chest_mask_2.png"]
    assert len({n.casefold() for n in names.values()}) == 3


def test_invalid_boxes_are_errors_not_ok_rows(input_folder, tmp_path, nano_pth, capsys):
    images = sorted(input_folder.glob("covid*.png"))
    boxes = tmp_path / "boxes.csv"
    # saved by Excel: a byte-order mark before the header
    boxes.write_text(f"\ufefffile,x0,y0,x1,y1\n{images[0].name},10,20,200,300\n{images[1].name},900,900,950,950\n",
                     encoding="utf-8")
    out = tmp_path / "out"
    model = ["--model", str(nano_pth), "--model-type", "vit_nano"]
    assert main(["segment", str(images[0]), str(images[1]), "--out", str(out), "--boxes", str(boxes), *model]) == 1
    rows = {Path(r["file"]).name: r for r in _rows(out)}
    assert rows[images[0].name]["status"] == "ok"
    assert rows[images[1].name]["status"] == "error" and "outside" in rows[images[1].name]["error"]
    boxes.write_text(f"file,x0,y0,x1,y1\n{images[2].name},10,10,nan,300\n")
    assert main(["segment", str(images[2]), "--out", str(tmp_path / "out2"), "--boxes", str(boxes), *model]) == 2
    err = capsys.readouterr().err
    assert "boxes.csv:2" in err and "x1 > x0" in err


def test_console_script_help_teaches():
    result = subprocess.run([sys.executable, "-m", "napari_adaqat", "segment", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "--boxes" in result.stdout and "results.csv" in result.stdout


def test_a_rerun_in_another_format_writes_that_format_and_a_foreign_results_csv_is_refused(tmp_path, cxr_dir, capsys):
    """Review fixes: masks recorded as PNG do not make a TIF rerun skip; a results.csv that is not
    ours is refused with one line, not overwritten; a missing input is 'not found', not a folder clash."""
    image = sorted((cxr_dir / "images").glob("*.png"))[0]
    out = tmp_path / "out"
    assert main(["segment", str(image), "--out", str(out), "--device", "cpu"]) == 0
    assert main(["segment", str(image), "--out", str(out), "--format", "tif", "--device", "cpu"]) == 0
    assert (out / f"{image.stem}_mask.png").is_file() and (out / f"{image.stem}_mask.tif").is_file()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "results.csv").write_text("patient,score\nA,1\n")
    capsys.readouterr()
    assert main(["segment", str(image), "--out", str(foreign), "--device", "cpu"]) == 2
    assert "is not an adaqat results file" in capsys.readouterr().err
    assert (foreign / "results.csv").read_text() == "patient,score\nA,1\n"
    assert main(["segment", str(tmp_path / "typo"), "--out", str(tmp_path / "o2"), "--device", "cpu"]) != 0
    assert "inside the input folder" not in capsys.readouterr().err


def test_files_of_other_kinds_in_a_folder_are_named_not_silently_skipped(tmp_path, cxr_dir, nano_pth, capsys):
    """A folder's GIF or WebP films are not read: the run says which files it skipped and what it reads;
    a folder with nothing it reads is one clear error that names them too (hidden files are not listed)."""
    from PIL import Image

    others = tmp_path / "gifs"
    others.mkdir()
    film = Image.open(sorted((cxr_dir / "images").glob("*.png"))[0])
    film.save(others / "a.gif")
    film.save(others / "b.webp")
    (others / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    model = ["--model", str(nano_pth), "--model-type", "vit_nano", "--device", "cpu"]
    assert main(["segment", str(others), "--out", str(tmp_path / "o1"), *model]) == 2
    err = capsys.readouterr().err
    assert "no image files found" in err and "a.gif, b.webp" in err and ".gif, .webp" in err
    assert ".DS_Store" not in err and len(err.strip().splitlines()) == 1
    shutil.copy(sorted((cxr_dir / "images").glob("*.png"))[0], others / "film.png")
    assert main(["segment", str(others), "--out", str(tmp_path / "o2"), *model]) == 0
    err = capsys.readouterr().err
    assert "skipped 2 files that are not images adaqat reads" in err and "a.gif, b.webp" in err
    assert (tmp_path / "o2" / "film_mask.png").is_file()


def test_a_single_film_may_be_segmented_into_a_folder_beside_it(tmp_path, cxr_dir, nano_pth, capsys, monkeypatch):
    """The first command a clinician types, in the film's own folder: `adaqat segment xray.png --out masks`.
    A folder below a single film's folder is fine; the film's folder itself and a folder input's sub-folder are not."""
    desktop = tmp_path / "Desktop"
    desktop.mkdir()
    film = desktop / "xray.png"
    film.write_bytes(sorted((cxr_dir / "images").glob("*.png"))[0].read_bytes())
    monkeypatch.chdir(desktop)
    model = ["--model", str(nano_pth), "--model-type", "vit_nano", "--device", "cpu"]
    assert main(["segment", "xray.png", "--out", "masks", *model]) == 0
    assert (desktop / "masks" / "xray_mask.png").is_file()
    capsys.readouterr()
    assert main(["segment", "xray.png", "--out", ".", *model]) == 2  # results.csv and a journal beside the films
    assert "is the folder of the input" in capsys.readouterr().err and not (desktop / "results.csv").exists()
    assert main(["segment", ".", "--out", "masks2", *model]) == 2
    assert "inside the input folder" in capsys.readouterr().err and not (desktop / "masks2").exists()


def test_ctrl_c_says_how_far_it_got_and_compact_refuses_a_missing_folder(input_folder, tmp_path, nano_pth, capsys,
                                                                         monkeypatch):
    """Newcomer QA: Ctrl-C ended in a bare "adaqat: interrupted", and `--compact --out` with a mistyped folder said
    "nothing to compact: … is up to date" (exit 0) and made the folder."""
    from napari_adaqat.inference.engine import Engine

    segment, calls = Engine.segment, []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return segment(self, *args, **kwargs)

    monkeypatch.setattr(Engine, "segment", interrupted)
    out = tmp_path / "masks"
    code = main(["segment", str(input_folder), "--out", str(out), "--model", str(nano_pth), "--model-type", "vit_nano",
                 "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 130
    rows = _rows(out)  # (broken.png comes first: an error row, then one film segmented)
    assert sorted(r["status"] for r in rows) == ["error", "ok"]
    assert f"adaqat segment: stopped after 2 of 4 files; {out / 'results.csv'} lists them: the same command " \
           "segments the rest (finished files are skipped)" in err
    assert main(["segment", "--compact", "--out", str(tmp_path / "masks_typo")]) == 2
    assert "--compact: " in capsys.readouterr().err and not (tmp_path / "masks_typo").exists()
