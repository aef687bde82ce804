"""Public chest X-ray sets as they unpack: their folders of films and masks under their own names (Montgomery's
CXR_png/ + ManualMask/leftMask|rightMask, Shenzhen's CXR_png/ + mask/ with _mask names, nnU-Net's imagesTr/ +
labelsTr/ with a channel suffix), scored and trained as they are, and one line where a folder cannot be read so."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_adaqat.cli import main
from napari_adaqat.data import DataError, discover, load_pair
from napari_adaqat.data.layout import dataset_folders, layout_note


def _films(cxr_dir: Path) -> list[Path]:
    return sorted((cxr_dir / "images").glob("*.png"))[:3]


def _montgomery(root: Path, cxr_dir: Path) -> Path:
    """MontgomerySet/: CXR_png/MCUCXR_000k_0.png, ManualMask/{left,right}Mask/ (one lung each), ClinicalReadings/."""
    for folder in ("CXR_png", "ManualMask/leftMask", "ManualMask/rightMask", "ClinicalReadings"):
        (root / folder).mkdir(parents=True)
    for k, film in enumerate(_films(cxr_dir), start=1):
        name = f"MCUCXR_{k:04d}_0"
        shutil.copy(film, root / "CXR_png" / f"{name}.png")
        mask = np.asarray(Image.open(cxr_dir / "masks" / film.name)) > 0
        half = mask.shape[1] // 2
        for side, keep in (("rightMask", np.s_[:, :half]), ("leftMask", np.s_[:, half:])):  # the patient's right: left
            one = np.zeros_like(mask)
            one[keep] = mask[keep]
            Image.fromarray(one.astype(np.uint8) * 255).save(root / "ManualMask" / side / f"{name}.png")
        (root / "ClinicalReadings" / f"{name}.txt").write_text("Patient's Sex: F\nnormal\n")
    (root / "CXR_png" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0" * 8)
    return root


def test_montgomery_as_it_unpacks_is_scored_with_both_lungs_and_says_where_it_read(tmp_path, cxr_dir, capsys):
    root = _montgomery(tmp_path / "MontgomerySet", cxr_dir)
    assert dataset_folders(root) == (root / "CXR_png", root / "ManualMask")
    assert layout_note(root) == "films from CXR_png/, masks from ManualMask/ (the folders of MontgomerySet/ named so)"
    pairs, _split = discover(root)
    assert sorted(pairs) == ["MCUCXR_0001_0", "MCUCXR_0002_0", "MCUCXR_0003_0"]
    first = sorted(_films(cxr_dir))[0]
    _film, mask = load_pair(pairs["MCUCXR_0001_0"])
    np.testing.assert_array_equal(mask, np.asarray(Image.open(cxr_dir / "masks" / first.name)) > 0)  # both lungs

    out = tmp_path / "report"
    assert main(["evaluate", "--data", str(root), "--split", "all", "--out", str(out), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "note: films from CXR_png/, masks from ManualMask/" in err
    assert "note: each reference mask joins the masks of leftMask/ and rightMask/ (one folder per lung)" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 3 and summary["model"]["dice"]["median"] > 0.9  # against both lungs, not one


def test_shenzhen_as_it_unpacks_pairs_its_mask_names_and_names_films_without_a_mask(tmp_path, cxr_dir):
    root = tmp_path / "ChinaSet_AllFiles"
    (root / "CXR_png").mkdir(parents=True)
    (root / "mask").mkdir()
    films = _films(cxr_dir)
    for k, film in enumerate(films, start=1):
        shutil.copy(film, root / "CXR_png" / f"CHNCXR_{k:04d}_0.png")
        if k < 3:  # the set's masks cover only some of its films
            shutil.copy(cxr_dir / "masks" / film.name, root / "mask" / f"CHNCXR_{k:04d}_0_mask.png")
    (root / "NLM-ChinaCXRSet-ReadMe.docx").write_bytes(b"PK\x03\x04")
    pairs, _split = discover(root)
    assert pairs["CHNCXR_0001_0"].mask == root / "mask" / "CHNCXR_0001_0_mask.png"
    with pytest.raises(DataError, match=r"CHNCXR_0003_0.png: missing mask \(expected mask/CHNCXR_0003_0.png\)"):
        load_pair(pairs["CHNCXR_0003_0"])


def test_nnunet_export_pairs_films_with_a_channel_suffix_and_reads_its_label_map(tmp_path, cxr_dir):
    root = tmp_path / "Dataset501_Lungs"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for k, film in enumerate(_films(cxr_dir)):
        shutil.copy(film, root / "imagesTr" / f"case_{k:04d}_0000.png")
        lungs = np.asarray(Image.open(cxr_dir / "masks" / film.name)) > 0
        labels = lungs.astype(np.uint8)
        labels[:, lungs.shape[1] // 2:] *= 2  # 1 = right lung, 2 = left lung
        Image.fromarray(labels).save(root / "labelsTr" / f"case_{k:04d}.png")
    (root / "dataset.json").write_text('{"labels": {"background": 0, "right lung": 1, "left lung": 2}}')
    pairs, _split = discover(root)
    assert pairs["case_0000_0000"].mask == root / "labelsTr" / "case_0000.png"
    _film, mask = load_pair(pairs["case_0001_0000"])
    assert mask.any() and mask.dtype == bool


@pytest.mark.parametrize("layout, message", [
    ({"CXR_png": True, "test": True, "masks": False},
     r"no images/ folder, and 2 folders hold films \(CXR_png/, test/\): put the films with masks in images/"),
    ({}, r"empty dataset: no images found \(expected .*/images and .*/masks\)"),
])
def test_a_folder_whose_films_cannot_be_told_says_what_it_found(tmp_path, cxr_dir, layout, message):
    root = tmp_path / "Lung Segmentation"
    root.mkdir()
    film = _films(cxr_dir)[0]
    for folder, films in layout.items():
        (root / folder).mkdir()
        shutil.copy(film if films else cxr_dir / "masks" / film.name, root / folder / film.name)
    with pytest.raises(DataError, match=message):
        discover(root)


def test_the_folder_of_films_given_as_data_points_to_the_folder_above(tmp_path, cxr_dir, capsys):
    root = _montgomery(tmp_path / "MontgomerySet", cxr_dir)
    with pytest.raises(DataError, match=r"CXR_png: holds films itself, no images/ folder and no masks beside them: give the folder above it"):
        discover(root / "CXR_png")
    assert main(["train", "--stage", "1", "--data", str(root / "CXR_png"), "--out", str(tmp_path / "run")]) == 2
    assert "holds films itself" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_a_recursive_segment_of_a_set_never_takes_its_masks_for_films(tmp_path, cxr_dir, capsys):
    """Montgomery's ManualMask/leftMask|rightMask under the set's root: the masks are skipped and said, never
    segmented as films with an "ok" row."""
    root = _montgomery(tmp_path / "MontgomerySet", cxr_dir)
    out = tmp_path / "masks_out"
    assert main(["segment", str(root), "--recursive", "--out", str(out), "--device", "cpu"]) == 0
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) == 4 and not any("ManualMask" in row for row in rows), rows  # a header and the 3 films
    assert "1 folder of masks (an adaqat output with its results.csv, or named as masks), not segmented: " \
           "ManualMask" in capsys.readouterr().err


@pytest.mark.parametrize("parts", [("Train", "Val", "Test"), ("train", "valid", "test"), ("Train", "Test")])
def test_the_split_layout_in_any_case_and_without_a_val_folder(tmp_path, cxr_dir, parts):
    """COVID-QU-Ex ships Train/ Val/ Test/ (read as such on a Mac or a PC, so here too); Kaggle sets write valid/;
    a set of train/ and test/ only scores its test films, and training says that validation is missing."""
    from napari_adaqat.data.check import check_data

    root = tmp_path / "set"
    films = sorted((cxr_dir / "images").glob("*.png"))
    for k, part in enumerate(parts):
        for film in films[k::len(parts)]:
            for folder, source in (("images", film), ("masks", cxr_dir / "masks" / film.name)):
                (root / part / folder).mkdir(parents=True, exist_ok=True)
                shutil.copy(source, root / part / folder / film.name)
    pairs, split = discover(root)
    assert len(pairs) == len(films) and split["train"] == sorted(p.stem for p in films[0::len(parts)])
    assert split["test"] == sorted(p.stem for p in films[len(parts) - 1::len(parts)])
    report = check_data(root)
    assert report.source == "layout" and report.n_masks == len(films) and not report.bad
    if len(parts) == 2:
        assert split["val"] == [] and "validation set is empty" in (report.error or "")


def test_files_of_jsrt_size_that_are_not_jsrt_films_are_told_so_everywhere(tmp_path, cxr_dir, capsys):
    """JSRT's films (headerless 2048² 12-bit .IMG) are read (tests/test_jsrt.py); a file of that name and size with
    values above 12 bits is not one: every path says so in one line."""
    data = tmp_path / "jsrt"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    np.arange(2048 * 2048, dtype=">u2").tofile(data / "images" / "JPCLN001.IMG")
    shutil.copy(cxr_dir / "masks" / _films(cxr_dir)[0].name, data / "masks" / "JPCLN001.png")
    pairs, _ = discover(data)
    with pytest.raises(DataError, match=r"JPCLN001\.IMG: not JSRT's \.IMG layout \(values up to 65535"):
        load_pair(pairs["JPCLN001"])
    assert main(["segment", str(data / "images"), "--out", str(tmp_path / "out")]) != 0
    assert "JPCLN001.IMG: not JSRT's .IMG layout (values up to 65535, above 12 bits' 4095)" in capsys.readouterr().err


def test_covid19_radiography_masks_smaller_than_their_films_are_scored_on_their_grid(tmp_path, cxr_dir, capsys):
    """COVID-19_Radiography_Dataset/COVID/images/*.png are 299², masks/*.png 256²: scored (with clicks) where drawn."""
    root = tmp_path / "COVID"
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True)
    for k, film in enumerate(_films(cxr_dir)[:2], start=1):
        Image.open(film).convert("L").resize((299, 299), Image.BILINEAR).save(root / "images" / f"COVID-{k}.png")
        Image.open(cxr_dir / "masks" / film.name).convert("L").resize((256, 256), Image.NEAREST).save(
            root / "masks" / f"COVID-{k}.png")
    out = tmp_path / "report"
    assert main(["evaluate", "--data", str(root), "--split", "all", "--clicks", "1", "--out", str(out),
                 "--device", "cpu"]) == 0
    assert "note: 2 film(s) are used on their masks' grid" in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 2 and not summary["skipped"] and summary["model"]["dice"]["median"] > 0.9
    assert (out / "worst_cases.png").is_file()


@pytest.mark.parametrize("name, masks", [
    ("masks", True), ("mask", True), ("ManualMask", True), ("leftMask", True), ("lung masks", True),
    ("labelsTr", True), ("GT", True), ("ground_truth", True), ("SEG", True), ("Masks_256", True),
    ("CXR_png", False), ("images", False), ("SEGAL^JOHN", False), ("Segura", False), ("unlabeled", False),
    ("labelled films", False), ("Groundwater", False), ("test", False),
])
def test_a_folder_is_named_as_masks_by_its_words_not_by_letters_inside_a_patients_name(name, masks):
    """A PACS export names folders after patients: SEGAL^JOHN holds films, and a recursive run goes into it."""
    from napari_adaqat.data.folders import is_mask_folder
    from napari_adaqat.data.layout import is_mask_name

    assert is_mask_name(name) is masks
    assert is_mask_folder(Path("/nonexistent") / name) is masks


def test_a_folder_of_adaqat_predictions_is_never_taken_for_the_reference_masks(tmp_path, cxr_dir):
    """DATA/images + DATA/segmentations (an adaqat segment output, its results.csv): no masks/ — said, not guessed:
    scoring a model against its own predictions would read as a perfect model."""
    data = tmp_path / "DATA"
    (data / "images").mkdir(parents=True)
    (data / "segmentations").mkdir()
    film = _films(cxr_dir)[0]
    shutil.copy(film, data / "images" / film.name)
    shutil.copy(cxr_dir / "masks" / film.name, data / "segmentations" / f"{film.stem}_mask.png")
    (data / "segmentations" / "results.csv").write_text("file,status,mask\n")
    pairs, _split = discover(data)
    assert pairs[film.stem].mask is None
    with pytest.raises(DataError, match=r"there is no masks/ folder beside images/; segmentations/ holds masks adaqat "
                                        r"made \(its results.csv\), not reference masks"):
        load_pair(pairs[film.stem])


def test_one_lungs_folder_alone_is_no_reference_and_a_lung_named_folder_wins(tmp_path, cxr_dir):
    """ManualMask/leftMask without rightMask: half a reference, refused; COVID-QU-Ex's `lung masks/` beside
    `infection masks/`: the lungs'."""
    root = _montgomery(tmp_path / "MontgomerySet", cxr_dir)
    shutil.rmtree(root / "ManualMask" / "rightMask")
    pairs, _split = discover(root)
    assert all(pair.mask is None for pair in pairs.values())
    with pytest.raises(DataError, match=r"ManualMask/ holds only folders \(leftMask/\)"):
        load_pair(pairs["MCUCXR_0001_0"])
    qu = tmp_path / "COVID-19"
    film = _films(cxr_dir)[0]
    for folder in ("images", "lung masks", "infection masks"):
        (qu / folder).mkdir(parents=True)
        shutil.copy(film if folder == "images" else cxr_dir / "masks" / film.name, qu / folder / film.name)
    assert dataset_folders(qu) == (qu / "images", qu / "lung masks")


def test_nnunet_with_its_test_films_and_kaggle_with_its_test_folder_pick_the_films_of_the_masks(tmp_path, cxr_dir):
    films = _films(cxr_dir)
    nn = tmp_path / "Dataset501_Lungs"
    kaggle = tmp_path / "Lung Segmentation"
    for folder in ("imagesTr", "imagesTs", "labelsTr"):
        (nn / folder).mkdir(parents=True)
    for folder in ("CXR_png", "test", "masks"):
        (kaggle / folder).mkdir(parents=True)
    for k, film in enumerate(films):
        shutil.copy(film, nn / ("imagesTr" if k < 2 else "imagesTs") / f"case_{k:04d}_0000.png")
        shutil.copy(film, kaggle / ("CXR_png" if k < 2 else "test") / f"MCUCXR_{k:04d}_0.png")
        if k < 2:
            shutil.copy(cxr_dir / "masks" / film.name, nn / "labelsTr" / f"case_{k:04d}.png")
            shutil.copy(cxr_dir / "masks" / film.name, kaggle / "masks" / f"MCUCXR_{k:04d}_0_mask.png")
    assert dataset_folders(nn) == (nn / "imagesTr", nn / "labelsTr")
    assert dataset_folders(kaggle) == (kaggle / "CXR_png", kaggle / "masks")
    assert discover(nn)[0]["case_0001_0000"].mask == nn / "labelsTr" / "case_0001.png"


def test_the_channel_suffix_is_dropped_only_in_a_folder_of_nnunet_films(tmp_path, cxr_dir):
    """IMG_0000.png among other films is a film of its own name: never paired with an orphan masks/IMG.png."""
    film = _films(cxr_dir)[0]
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    shutil.copy(film, tmp_path / "images" / "IMG_0000.png")
    shutil.copy(film, tmp_path / "images" / "other.png")
    shutil.copy(cxr_dir / "masks" / film.name, tmp_path / "masks" / "IMG.png")
    assert discover(tmp_path)[0]["IMG_0000"].mask is None


def test_a_scan_goes_into_a_film_folder_with_a_mask_word_but_not_a_folder_of_masks(tmp_path, cxr_dir):
    from napari_adaqat.data.folders import scan_inputs

    film = _films(cxr_dir)[0]
    for folder, source in (("site_gt_hospital", film), ("segmentation_results", cxr_dir / "masks" / film.name)):
        (tmp_path / folder).mkdir()
        shutil.copy(source, tmp_path / folder / film.name)
    files, skipped = scan_inputs([tmp_path], recursive=True)
    assert files == [tmp_path / "site_gt_hospital" / film.name]
    assert skipped == [tmp_path / "segmentation_results"]


def test_a_whole_name_mask_beside_its_film_is_not_segmented(tmp_path):
    from napari_adaqat.data.dataset import masks_beside_films

    names = ["a.jpg", "a.jpg.png", "b.png", "b.png_mask.png", "IM0001", "IM0001.png"]
    assert [p.name for p in masks_beside_films([tmp_path / n for n in names])] == ["a.jpg.png", "b.png_mask.png"]
