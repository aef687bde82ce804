"""One film ↔ mask naming rule for every path: what training and evaluation pair by
(``data.dataset.MaskFolder``) is what ``adaqat segment`` and the docks skip as a mask beside its film
(``data.folders.masks_beside_films``).  Names are compared case-insensitively and in one Unicode form,
as the file systems of the sites' Windows and macOS machines do."""
from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_adaqat.data.dataset import MaskFolder, discover
from napari_adaqat.data.folders import masks_beside_films

DECOMPOSED = unicodedata.normalize("NFD", "Rénal")  # how macOS writes 'é': 'e' + a combining accent
COMPOSED = unicodedata.normalize("NFC", "Rénal")


def _png(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)
    return path


@pytest.mark.parametrize("film, mask", [
    ("IMG001.png", "img001_mask.png"),  # a PACS export in capitals, its masks in lower case
    ("img002.PNG", "IMG002-GT.png"),
    (f"{COMPOSED}.png", f"{DECOMPOSED}_seg.png"),  # one name in two Unicode forms
    (f"{DECOMPOSED}.png", f"{COMPOSED.upper()}_LABEL.png"),
    ("chest 7.png", "chest 7.png_mask.png"),  # tools that append to the film's whole file name
    ("chest 8.jpg", "Chest 8.JPG_seg.png"),
])
def test_a_mask_beside_its_film_and_in_masks_pairs_by_the_same_rule(tmp_path, film, mask):
    beside = [_png(tmp_path / "flat" / film), _png(tmp_path / "flat" / mask)]
    assert masks_beside_films(beside) == [beside[1]]  # adaqat segment skips it as that film's mask

    _png(tmp_path / "ds" / "images" / film)
    _png(tmp_path / "ds" / "masks" / mask, 255)
    assert MaskFolder(tmp_path / "ds" / "masks").find(tmp_path / "ds" / "images" / film) == tmp_path / "ds" / "masks" / mask


def test_an_exact_name_wins_over_a_name_in_another_case(tmp_path):
    """Linux keeps 'A.png' and 'a.png' apart; each film keeps the mask of its own exact name."""
    masks = tmp_path / "masks"
    for name in ("A.png", "a.png"):
        _png(masks / name)
    folder = MaskFolder(masks)
    assert folder.find(tmp_path / "images" / "A.png") == masks / "A.png"
    assert folder.find(tmp_path / "images" / "a.png") == masks / "a.png"


def test_a_dataset_in_capitals_with_lower_case_masks_trains(tmp_path):
    for i in range(3):
        _png(tmp_path / "images" / f"CXR{i}.png")
        _png(tmp_path / "masks" / f"cxr{i}_mask.png", 255)
    pairs, _ = discover(tmp_path, 0)
    assert {name: pair.mask.name for name, pair in pairs.items()} == {f"CXR{i}": f"cxr{i}_mask.png" for i in range(3)}


def test_a_mask_two_films_could_claim_by_case_is_given_to_neither_unless_one_name_is_exact(tmp_path):
    """Linux: films 'A.png' and 'a.png', one mask: the exact name keeps it; 'a_mask.png' is nobody's for sure."""
    for name in ("A.png", "a.png", "B.png", "b.png"):
        _png(tmp_path / "images" / name)
    _png(tmp_path / "masks" / "a.png", 255)
    _png(tmp_path / "masks" / "b_mask.png", 255)
    pairs, _ = discover(tmp_path, 0)
    assert {name: pair.mask.name if pair.mask else None for name, pair in pairs.items()} == {
        "A": None, "a": "a.png", "B": None, "b": None}


@pytest.mark.parametrize("layout", ["copies in images/ and masks/", "masks/ is images/"])
def test_masks_beside_their_films_in_images_are_masks_not_films(tmp_path, layout):
    """An export of films with their masks beside them, used as a dataset (a QA find: evaluate scored a_mask.png as a
    film against itself, dropped a.png, and reported Dice 0.69 for a model at 0.955; training would learn
    mask → mask)."""
    root = tmp_path / "ds"
    for name in ("a", "b"):
        _png(root / "images" / f"{name}.png", 100)
        _png(root / "images" / f"{name}_mask.png", 255)
        if layout.startswith("copies"):
            _png(root / "masks" / f"{name}_mask.png", 255)
    if layout == "masks/ is images/":
        (root / "masks").symlink_to("images")
    pairs, split = discover(root)
    assert sorted(pairs) == ["a", "b"]
    assert {name: (p.image.name, p.mask.name) for name, p in pairs.items()} == {
        "a": ("a.png", "a_mask.png"), "b": ("b.png", "b_mask.png")}
    assert all(p.mask.parent.name == "masks" for p in pairs.values())


@pytest.mark.parametrize("mask", ["a.jpg.png", "a.jpg_mask.png", "a.jpg.tif"])
def test_masks_named_by_the_films_whole_file_name_pair(tmp_path, mask):
    """``a.jpg.png``: a film's whole name with the mask format's extension appended (a common export habit)."""
    film = _png(tmp_path / "images" / "a.jpg")  # (a PNG under a .jpg name: pairing goes by names only)
    _png(tmp_path / "images" / "b.jpg")
    found = _png(tmp_path / "masks" / mask, 255)
    pairs, _split = discover(tmp_path)
    assert pairs["a"].image == film and pairs["a"].mask == found and pairs["b"].mask is None


def _lung(path: Path, shape: tuple[int, int], columns: slice) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.zeros(shape, np.uint8)
    mask[4:28, columns] = 255
    Image.fromarray(mask).save(path)
    return path


@pytest.mark.parametrize("left, right, others, ext", [
    ("leftMask", "rightMask", (), ".png"),  # Montgomery's ManualMask/ (renamed masks/)
    ("left lung", "right lung", ("left clavicle", "right clavicle", "heart"), ".gif"),  # SCR's folders of GIFs
])
def test_one_mask_folder_per_lung_is_joined(tmp_path, left, right, others, ext):
    from napari_adaqat.data.dataset import DataError, load_pair

    film = tmp_path / "images" / "MCUCXR_0001_0.png"
    film.parent.mkdir(parents=True)
    Image.fromarray(np.linspace(0, 255, 32 * 40).reshape(32, 40).astype(np.uint8)).save(film)
    Image.fromarray(np.linspace(255, 0, 32 * 40).reshape(32, 40).astype(np.uint8)).save(tmp_path / "images" / "b.png")
    _lung(tmp_path / "masks" / left / f"MCUCXR_0001_0{ext}", (32, 40), slice(24, 36))
    _lung(tmp_path / "masks" / right / f"MCUCXR_0001_0{ext}", (32, 40), slice(4, 16))
    _lung(tmp_path / "masks" / left / f"b{ext}", (32, 40), slice(24, 36))  # b has no right lung
    for other in others:
        _lung(tmp_path / "masks" / other / f"MCUCXR_0001_0{ext}", (32, 40), slice(16, 24))
    pairs, _split = discover(tmp_path)
    pair = pairs["MCUCXR_0001_0"]
    assert pair.mask.parent.name == left and [p.parent.name for p in pair.parts] == [right]
    _image, mask = load_pair(pair)
    assert mask[10, 30] and mask[10, 10] and not mask[10, 20]  # both lungs, nothing of the clavicles or the heart
    assert pairs["b"].mask is None
    with pytest.raises(DataError, match=rf"missing mask \(expected masks/{left}/b.png and masks/{right}/b.png: one "
                                        rf"mask per lung, joined; none in {right}/\)"):
        load_pair(pairs["b"])


def test_masks_in_one_sub_folder_pair_and_several_say_where_to_put_them(tmp_path):
    from napari_adaqat.data.dataset import DataError, load_pair

    film = _png(tmp_path / "images" / "a.png", 90)
    _lung(tmp_path / "masks" / "lungs" / "a_mask.png", (8, 8), slice(1, 4))
    pairs, _split = discover(tmp_path)
    assert pairs["a"].mask == tmp_path / "masks" / "lungs" / "a_mask.png" and pairs["a"].image == film
    _lung(tmp_path / "masks" / "old" / "a.png", (8, 8), slice(1, 4))  # two folders, neither per lung: not guessed
    pairs, _split = discover(tmp_path)
    assert pairs["a"].mask is None
    with pytest.raises(DataError, match=r"masks/ holds only folders \(lungs/, old/\): put the masks in masks/ itself"):
        load_pair(pairs["a"])
