"""Where the logit cells lie: training targets sampled there, inference reading them there (model/logit_grid.py)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_adaqat.data.dataset import discover, load_pair
from napari_adaqat.model.build import build_sam, spec_from_metadata
from napari_adaqat.model.formats.vote_file import remove_vote
from napari_adaqat.model.lean_decoder import upsample_logits
from napari_adaqat.model.loading import DEFAULT_BASELINE, DEFAULT_MODEL, load_model
from napari_adaqat.model.logit_grid import FRESH_MODEL_OFFSET, grid_target, upsample_on_grid
from napari_adaqat.model.spec import ModelLoadError, SamSpec
from napari_adaqat.train.config import make_config
from napari_adaqat.train.dataset import LungDataset
from napari_adaqat.train.start_model import build_stage1


def test_the_recipes_grid_gives_the_old_nearest_targets_from_512_px_films(cxr_dir):
    """-0.25 on films twice the input size reads exactly the pixels torch's nearest resize took: the
    recorded recipes reproduce their files bit for bit."""
    rng = np.random.default_rng(0)
    masks = [rng.random((512, 512)) > 0.5, ndimage.binary_dilation(rng.random((512, 384)) > 0.99, iterations=9)]
    for mask in masks:
        h, w = mask.shape[0] // 2, mask.shape[1] // 2
        old = torch.nn.functional.interpolate(torch.as_tensor(mask, dtype=torch.float32)[None, None],
                                              size=(h, w), mode="nearest")[0]
        assert torch.equal(grid_target(mask, (h, w), FRESH_MODEL_OFFSET), old)
    pairs, _ = discover(cxr_dir)
    data = LungDataset(list(pairs.values()), image_size=256, pixel_mean=(0, 0, 0), pixel_std=(1, 1, 1), train=False)
    mask = load_pair(list(pairs.values())[0])[1]
    h, w = mask.shape[0] // 2, mask.shape[1] // 2  # a 512 x 426 film: 256 x 213 at the input
    old = torch.nn.functional.interpolate(torch.as_tensor(mask, dtype=torch.float32)[None, None], size=(h, w))[0]
    assert torch.equal(data[0]["mask"][:, :h, :w], old) and not data[0]["mask"][:, h:, w:].any()


def test_sams_centred_grid_averages_each_2x2_block():
    mask = np.random.default_rng(1).random((64, 48)) > 0.5
    area = torch.nn.functional.avg_pool2d(torch.as_tensor(mask, dtype=torch.float32)[None], 2)
    assert torch.allclose(grid_target(mask, (32, 24), 0.0), area, atol=1e-6)


def test_sams_grid_reads_as_sam_does():
    """Offset 0 gives ``Sam.postprocess_masks``'s logits (one input pixel per cell), the padding never read."""
    low = torch.randn(2, 256, 256)
    for size in [(512, 426), (3000, 2500), (300, 250)]:
        assert torch.allclose(upsample_on_grid(low, 256, (256, 213), size, 0.0),
                              upsample_logits(low, 256, (256, 213), size), atol=1e-4)


@pytest.mark.parametrize("size", [512, 1500])
def test_targets_read_back_put_the_mask_where_it_was(size):
    """A model that learnt its targets perfectly (logits = its targets), read on its grid: the mask's centre
    lies where the expert's does, on average over 12 positions, on a 512-px and a 1500-px film.  Read as SAM's
    centred grid (the inference before), it lies a quarter of an input pixel right of and below it."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size] + 0.5
    shift = {FRESH_MODEL_OFFSET: [], 0.0: []}
    for _ in range(12):
        centre = rng.uniform(0.4, 0.6, 2) * size
        mask = ((yy - centre[0]) / (0.3 * size)) ** 2 + ((xx - centre[1]) / (0.2 * size)) ** 2 < 1
        logits = 40 * (grid_target(mask, (256, 256), FRESH_MODEL_OFFSET) - 0.5)
        for offset, found in shift.items():
            up = upsample_on_grid(logits, 256, (256, 256), (size, size), offset)[0] > 0
            found.append(np.array(ndimage.center_of_mass(up.numpy())) - ndimage.center_of_mass(mask))
    px = size / 256  # film pixels per input pixel
    assert np.abs(np.mean(shift[FRESH_MODEL_OFFSET], 0)).max() < 0.03 * px
    assert np.allclose(np.mean(shift[0.0], 0), 0.25 * px, atol=0.03 * px)


def test_the_offset_is_part_of_the_spec_and_checked():
    spec = dataclasses.replace(build_sam("hybrid_nano").spec, logit_offset=-0.25)
    assert spec.to_dict()["logit_offset"] == -0.25 and SamSpec.from_dict(spec.to_dict()) == spec
    assert "logit_offset" not in build_sam("hybrid_nano").spec.to_dict()  # older readers load such files
    for bad in (2.0, "x", float("nan")):
        with pytest.raises(ModelLoadError, match="logit_offset"):
            spec_from_metadata("m.safetensors", {**spec.to_dict(), "logit_offset": bad})


def test_the_bundled_files_record_their_grid():
    for path in (DEFAULT_MODEL, DEFAULT_BASELINE):
        assert load_model(path).spec.logit_offset == FRESH_MODEL_OFFSET


def test_a_fresh_model_trains_on_the_recipes_grid_and_a_checkpoint_keeps_its_own(nano_pth, tmp_path, cxr_dir):
    def start(**options):
        return build_stage1(make_config(None, 1, dict(data=str(cxr_dir), out=str(tmp_path / "run"), **options)))[0]
    assert start(model_type="hybrid_nano", mode="full").spec.logit_offset == FRESH_MODEL_OFFSET
    assert start(model_type="vit_nano", checkpoint=str(nano_pth), mode="decoder").spec.logit_offset == 0.0  # SAM's
    assert start(checkpoint=str(DEFAULT_MODEL), mode="decoder").spec.logit_offset == FRESH_MODEL_OFFSET


def test_the_predictor_reads_the_bundled_models_grid(tmp_path, cxr_dir):
    """The bundled model's mask, read on its grid, lies half a 512-px pixel up and left of the same file's
    mask read as SAM's grid (the inference before): where its targets put the lungs."""
    from napari_adaqat import open_model
    from napari_adaqat.data.boxes import mask_box

    # the model's own logits (its vote's lie on the vote's own grid), read on its grid and as SAM's
    own = remove_vote(DEFAULT_MODEL, tmp_path / "own.safetensors")
    centred = remove_vote(DEFAULT_MODEL, tmp_path / "centred.safetensors", spec_drop=("logit_offset",))
    pairs, _ = discover(cxr_dir)
    image, mask = load_pair(list(pairs.values())[0])
    on_grid, as_sam = (open_model(path, device="cpu", clean=False).segment(image, mask_box(mask))
                       for path in (own, centred))
    moved = np.array(ndimage.center_of_mass(as_sam)) - ndimage.center_of_mass(on_grid)
    assert np.allclose(moved, 0.5, atol=0.15), moved


def test_an_edited_mask_becomes_a_prompt_on_the_models_grid(tmp_path, cxr_dir):
    """The model's own mask, handed back as an edit, gives a mask prompt where its own ``low_res_logits`` lie
    (before: a quarter of an input pixel right of and below them)."""
    from napari_adaqat import open_model
    from napari_adaqat.data.boxes import mask_box

    pairs, _ = discover(cxr_dir)
    image, mask = load_pair(list(pairs.values())[0])
    predictor = open_model(remove_vote(DEFAULT_MODEL, tmp_path / "own.safetensors"), device="cpu",
                           clean=False).predictor
    predictor.set_image(image)
    pred = predictor.predict(boxes=mask_box(mask))
    own = ndimage.center_of_mass(pred.low_res_logits[0, 0].numpy() > 0)
    edit = ndimage.center_of_mass(predictor.mask_input_from(pred.masks[0])[0, 0].numpy() > 0)
    assert np.abs(np.subtract(edit, own)).max() < 0.08, (edit, own)
