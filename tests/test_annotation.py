"""The Annotate dock's folder state without napari: what is accepted, skipped or a draft, where it resumes,
atomic saves that link (else copy) the film and never touch the original, refusals in one line."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from skimage.io import imread

from napari_adaqat.data import discover
from napari_adaqat.data.annotation import AnnotationFolder, link_or_copy
from napari_adaqat.io import read_mask
from test_dicom_seg import clinical_dicom, seg_pixels  # tests/ is on sys.path


def lungs(shape=(512, 512)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[100:400, 60:220] = mask[100:400, 290:450] = True
    return mask


def test_accept_skip_draft_resume_and_the_dataset_trains(films, tmp_path):
    dataset = tmp_path / "dataset"
    folder = AnnotationFolder(films, dataset)
    names = [f.name for f in folder.films]
    assert folder.progress_line() == "0 of 4 accepted, 0 skipped" and folder.resume_index() == 0
    mode = os.stat(folder.films[1].path).st_mode

    with pytest.raises(ValueError, match="The mask is empty"):
        folder.accept(1, np.zeros((512, 512)))
    assert not dataset.exists() or not any(dataset.rglob("*.png"))  # nothing written for a refused mask
    folder.accept(1, lungs())
    folder.skip(2)
    folder.save_draft(3, lungs() & False)  # a draft may be empty: it is only kept, not trained on
    assert [folder.describe(i) for i in range(4)] == ["to do", "accepted", "skipped", "draft (not saved)"]
    assert folder.resume_index() == 0 and folder.next_index(0) == 3 and folder.next_index(3) == 0
    np.testing.assert_array_equal(read_mask(dataset / "masks" / f"{names[1]}.png"), lungs())
    assert os.path.samefile(dataset / "images" / folder.films[1].path.name, folder.films[1].path)
    assert os.stat(folder.films[1].path).st_mode == mode  # the original's mode is untouched by the link

    folder.remember_box(np.array([51.2, 25.6, 460.8, 486.4]), (512, 512))
    again = AnnotationFolder(films, dataset)  # a restart: the same state from the files
    assert again.progress_line() == "1 of 4 accepted, 1 skipped" and again.skipped == {names[2]}
    np.testing.assert_allclose(again.box_for((256, 1024)), [102.4, 12.8, 921.6, 243.2])
    saved, kind = again.read_saved(3)
    assert kind == "draft" and not saved.any()
    again.accept(2, lungs())  # accepting a skipped film un-skips it
    assert json.loads((dataset / "annotate.json").read_text())["skipped"] == []
    assert again.progress_line() == "2 of 4 accepted, 0 skipped"

    pairs, _split = discover(dataset)  # the dataset folder is a training set as it is
    assert sorted(pairs) == sorted([names[1], names[2]])
    assert all(p.mask is not None for p in pairs.values())


def test_refusals_are_one_line_and_write_nothing(films, tmp_path, cxr_dir):
    with pytest.raises(ValueError, match="inside the image folder"):
        AnnotationFolder(films, films / "dataset")
    with pytest.raises(ValueError, match="not found"):
        AnnotationFolder(tmp_path / "nowhere", tmp_path / "dataset")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files") as empty:
        AnnotationFolder(tmp_path / "empty", tmp_path / "dataset")
    assert "it holds" not in str(empty.value)
    (tmp_path / "empty" / "film.gif").write_bytes(b"GIF89a")  # a kind it does not read: named
    with pytest.raises(ValueError, match=r"no image files .*the folder holds 1 file that is not an image adaqat reads \(\.gif"):
        AnnotationFolder(tmp_path / "empty", tmp_path / "dataset")
    (tmp_path / "empty" / "images").mkdir()  # the parent of the films chosen: its sub-folder is named
    with pytest.raises(ValueError, match=r"1 sub-folder, not looked into \(choose the folder of the films itself\): images"):
        AnnotationFolder(tmp_path / "empty", tmp_path / "dataset")
    shutil.copy(films / sorted(os.listdir(films))[0], films / (Path(sorted(os.listdir(films))[0]).stem + ".tif"))
    with pytest.raises(ValueError, match="would share the mask"):
        AnnotationFolder(films, tmp_path / "dataset")
    assert not (tmp_path / "dataset").exists()
    full = AnnotationFolder(cxr_dir / "images", tmp_path / "d2")
    with pytest.raises(ValueError, match="covers the whole film"):
        full.accept(0, np.ones((512, 426)))


def test_copy_when_a_link_is_refused_and_an_existing_mask_is_only_replaced_by_accept(films, tmp_path, monkeypatch):
    folder = AnnotationFolder(films, tmp_path / "dataset")
    folder.accept(1, lungs())
    before = folder.mask_path(1).read_bytes()
    folder.save_draft(1, ~lungs())  # work on an accepted film, not accepted again
    assert folder.mask_path(1).read_bytes() == before and folder.describe(1) == "accepted, edited (not saved)"
    assert folder.read_saved(1)[1] == "draft"

    def no_links(*_args, **_kwargs):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    target = tmp_path / "copy" / "film.png"
    assert link_or_copy(folder.films[2].path, target) == "copied"
    assert target.read_bytes() == folder.films[2].path.read_bytes()
    assert not os.path.samefile(target, folder.films[2].path)
    assert link_or_copy(target, target) == "present"
    assert [p.name for p in target.parent.iterdir()] == ["film.png"]  # no temp file left


def test_dicom_film_gets_a_seg_that_references_it(tmp_path, cxr_dir):
    films = tmp_path / "films"
    films.mkdir()
    pixels = imread(sorted((cxr_dir / "images").glob("*.png"))[1])
    source = clinical_dicom(films / "chest.dcm", pixels)
    folder = AnnotationFolder(films, tmp_path / "dataset")
    assert folder.films[0].name == "chest"
    folder.accept(0, lungs())
    seg = folder.write_seg(0, lungs())
    assert seg == tmp_path / "dataset" / "dicom_seg" / "chest.dcm"
    np.testing.assert_array_equal(seg_pixels(seg, source), lungs())
    assert (tmp_path / "dataset" / "images" / "chest.dcm").read_bytes() == source.read_bytes()
