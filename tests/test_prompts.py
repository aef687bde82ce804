"""Points and mask prompts (issue 32): the lean decoder against stock SAM for every prompt kind, SAM's
argument names and shapes, points alone, ``low_res_logits`` fed back, box clipping, the engine's
prompts for model and baseline, and ``adaqat segment --points`` with its CSV."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_adaqat.cli import main
from napari_adaqat.data.boxes import mask_box
from napari_adaqat.data.points import read_points_csv
from napari_adaqat.inference.engine import Engine
from napari_adaqat.inference.postprocess import clip_margin, finish_mask
from napari_adaqat.io import read_image, read_mask
from napari_adaqat.metrics import dice
from napari_adaqat.model import loading
from napari_adaqat.model.build import build_sam
from napari_adaqat.model.forward import decode_coarse
from napari_adaqat.model.lean_decoder import decode_prompt_logits, image_context, upsample_logits

needs_default = pytest.mark.skipif(not loading.DEFAULT_MODEL.is_file(), reason="bundled default model not installed")


@pytest.fixture(scope="module")
def film(cxr_dir):
    """(image (H, W), reference (H, W) bool, its largest lung (H, W) bool) of a real film."""
    path = next((cxr_dir / "images").glob("*5782ae15.png"))
    ref = read_mask(cxr_dir / "masks" / path.name) != 0
    labels, _n = ndimage.label(ref)
    lung = labels == 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    return read_image(path).pixels, ref, lung


@pytest.fixture(scope="module")
def model():
    if not loading.DEFAULT_MODEL.is_file():
        pytest.skip("bundled default model not installed")
    from napari_adaqat import open_model

    return open_model(device="cpu")


def _assert_within(mask: np.ndarray, box: np.ndarray) -> None:
    """No pixel of ``mask`` (H, W) outside the xyxy ``box`` plus the clipping margin (and the mask not empty)."""
    margin = clip_margin(mask.shape)
    rows, cols = np.nonzero(mask)
    assert rows.size and rows.min() >= box[1] - margin and rows.max() <= box[3] + margin
    assert cols.min() >= box[0] - margin and cols.max() <= box[2] + margin


def test_lean_decoder_equals_stock_for_every_prompt_kind():
    torch.manual_seed(0)
    sam = build_sam("vit_nano").eval()
    e, c, s = sam.prompt_encoder.image_embedding_size[0], sam.prompt_encoder.embed_dim, sam.image_encoder.img_size
    features = torch.randn(1, c, e, e)
    ctx = image_context(sam, features)
    boxes = torch.tensor([[10.0, 20.0, 0.7 * s, 0.8 * s], [5.0, 5.0, 0.5 * s, 0.6 * s]])
    coords = torch.tensor([[[30.0, 40.0], [0.5 * s, 0.5 * s]], [[60.0, 20.0], [0.3 * s, 0.4 * s]]])
    labels = torch.tensor([[1, 0], [0, 1]])
    masks = torch.randn(2, 1, 4 * e, 4 * e) * 5
    kinds = {"box": dict(boxes=boxes), "points": dict(boxes=None, point_coords=coords, point_labels=labels),
             "box+points": dict(boxes=boxes, point_coords=coords, point_labels=labels),
             "box+points+mask": dict(boxes=boxes, point_coords=coords, point_labels=labels, mask_input=masks),
             "mask": dict(boxes=None, mask_input=masks)}
    with torch.no_grad():
        for name, kw in kinds.items():
            stock, stock_iou = decode_coarse(sam, features, **kw)
            lean, lean_iou = decode_prompt_logits(sam, ctx, **kw)
            assert torch.allclose(stock[:, 0], lean, atol=1e-5), name
            assert torch.allclose(stock_iou[:, 0], lean_iou, atol=1e-5), name


@needs_default
def test_sam_names_shapes_and_the_lean_path_equal_the_stock_one(model, film):
    image, ref, _lung = film
    h, w = image.shape[:2]
    predictor = model.set_image(image).predictor
    size = tuple(model.sam.prompt_encoder.mask_input_size)
    box = mask_box(ref)
    clicks = dict(point_coords=np.array([[w / 2, h / 2], [w / 4, h / 2]]), point_labels=np.array([0, 1]))
    pred = predictor.predict(boxes=box, **clicks)
    assert pred.masks.shape == (1, h, w) and pred.low_res_logits.shape == (1, 1, *size)
    fed = predictor.predict(boxes=box, mask_input=pred.low_res_logits[0], **clicks)  # (1, 4E, 4E) as SAM takes it
    assert fed.masks.shape == (1, h, w) and torch.isfinite(fed.low_res_logits).all()
    batched = predictor.predict(boxes=np.stack([box, box]), point_coords=clicks["point_coords"][None].repeat(2, 0),
                                point_labels=clicks["point_labels"][None].repeat(2, 0))
    assert batched.masks.shape == (2, h, w) and np.array_equal(batched.masks[0], pred.masks[0])
    context = predictor._context
    try:  # the stock decoder (decode_coarse + postprocess_masks) on the same features
        predictor._context = None
        stock = predictor.predict(boxes=box, mask_input=pred.low_res_logits, **clicks)
    finally:
        predictor._context = context
    assert torch.allclose(stock.logits, fed.logits, atol=1e-3)
    assert torch.allclose(stock.low_res_logits, fed.low_res_logits, atol=1e-3)
    with pytest.raises(ValueError, match="point_labels"):
        predictor.predict(point_coords=clicks["point_coords"])
    with pytest.raises(ValueError, match="mask_input must be"):
        predictor.predict(boxes=box, mask_input=np.zeros((1, 64, 64)))
    with pytest.raises(ValueError, match="point_labels 1"):
        predictor.predict(point_coords=[[5.0, 5.0]], point_labels=[2])


@needs_default
def test_points_alone_work_and_are_not_clipped(model, film):
    image, _ref, lung = film
    ys, xs = np.nonzero(lung)
    model.set_image(image)
    mask, pred = model.predict(point_coords=[[xs.mean(), ys.mean()]], point_labels=[1])
    assert mask.any() and mask[int(ys.mean()), int(xs.mean())]
    assert np.array_equal(mask, finish_mask(pred.masks[0], None, clean=True))  # no box: nothing clipped
    default, _ = model.predict()  # no prompt at all: the default box
    assert default.any() and not np.array_equal(default, mask)


@needs_default
def test_low_res_logits_round_trip_and_an_edited_mask_as_mask_input(model, film):
    image, ref, _lung = film
    box = mask_box(ref)
    first, pred = model.set_image(image).predict(box)
    again, _ = model.predict(box, mask_input=pred.low_res_logits)
    assert dice(again, ref) > 0.9 and dice(again, first) > 0.9  # feeding its own logits back breaks nothing
    edit = model.mask_input_from(ref)
    predictor = model.predictor
    emb = predictor._current
    assert edit.shape == pred.low_res_logits.shape and float(edit.abs().max()) <= 10.0
    back = (upsample_logits(edit[:, 0], predictor.image_size, emb.input_size, emb.original_size)[0] > 0).numpy()
    assert (back == ref).mean() > 0.99  # the edit sits where the mask is, in the model's frame
    with pytest.raises(ValueError, match="the mask is"):
        model.mask_input_from(ref[:-1])


@needs_default
def test_a_box_around_one_lung_is_obeyed_and_no_clip_gives_the_raw_mask(model, film):
    image, _ref, lung = film
    model.set_image(image)
    box = mask_box(lung)
    clipped, pred = model.predict(box)
    _assert_within(clipped, box)
    margin = clip_margin(image.shape[:2])
    free, _ = model.predict(box, clip=False)
    assert np.array_equal(free, finish_mask(pred.masks[0], None, clean=True))
    outside = free.copy()
    outside[max(0, int(box[1] - margin)):int(box[3] + margin) + 1, max(0, int(box[0] - margin)):int(box[2] + margin) + 1] = 0
    assert outside.sum() > 0 and dice(clipped, lung) > dice(free, lung)  # today's model spills: clipping helps
    h, w = image.shape[:2]
    corner = np.array([w - 41.0, 1.0, w - 1.0, 41.0])
    in_corner, _ = model.predict(corner)  # never both lungs from a corner box
    assert in_corner.sum() <= (40 + 2 * margin + 1) ** 2


@needs_default
def test_engine_passes_the_prompts_to_model_and_baseline(model, film):
    image, ref, _lung = film
    h, w = image.shape[:2]
    base = build_sam("vit_nano").eval()
    from napari_adaqat.inference.predictor import BoxPredictor

    engine = Engine()
    baseline = BoxPredictor(base)
    clicks = dict(point_coords=np.array([[w / 2, h / 2]]), point_labels=np.array([0]))
    first = engine.segment(image, mask_box(ref), model, baseline, reference=ref)
    result = engine.segment(image, mask_box(ref), model, baseline, reference=ref, mask_input=first.low_res_logits,
                            baseline_mask_input=first.baseline_low_res_logits, **clicks)
    size = tuple(model.sam.prompt_encoder.mask_input_size)
    assert result.low_res_logits.shape == (1, 1, *size) and result.baseline_low_res_logits is not None
    expected, _ = model.set_image(image).predict(mask_box(ref), mask_input=first.low_res_logits, **clicks)
    assert np.array_equal(result.mask, expected) and result.ssim is not None
    raw = baseline.set_image(image).predict(mask_box(ref), mask_input=first.baseline_low_res_logits, **clicks)
    assert np.array_equal(result.p_baseline, raw.probs[0])  # the baseline got the same points
    alone = engine.predict(image, None, model, **clicks | {"point_labels": np.array([1])})
    assert alone.box is None and alone.mask.any()


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_points_csv_header_optional_excel_quirks_and_one_line_errors(tmp_path):
    points = read_points_csv(_write(tmp_path / "a.csv", "a.png,10,20,1\na.png,30.5,40,0\nb.png,1,2,1\n"))
    assert points["a.png"][0].tolist() == [[10, 20], [30.5, 40]] and points["a.png"][1].tolist() == [1, 0]
    excel = read_points_csv(_write(tmp_path / "b.csv", "\ufeffFile;X;Y;Label\r\nc.png;\"10,5\";3;1\r\n;;;\r\n"))
    assert excel["c.png"][0].tolist() == [[10.5, 3.0]]
    for text, problem in [("file,x,y,label\na.png,1,2,lung\n", "2: (a.png) label is 'lung'"),
                          ("file,x,y,label\na.png,x,2,1\n", "2: (a.png) x,y must be numbers"),
                          ("file,x,y,label\na.png,-5,2,1\n", "2: (a.png) point -5,2"),
                          ("file,x,y\na.png,1,2\n", "missing column(s) label"),
                          ("file,x,y,label\n", "no points")]:
        with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")):
            read_points_csv(_write(tmp_path / "bad.csv", text))
    rng = np.random.default_rng(0)
    for i in range(40):  # garbage: points, or one line
        raw = bytes(rng.choice(list(b"file,x,y,label;\t\n\r\"0123456789.-abc\xff"), size=int(rng.integers(0, 60))))
        path = tmp_path / f"fuzz{i}.csv"
        path.write_bytes(raw)
        try:
            parsed = read_points_csv(path)
        except ValueError as exc:
            assert "\n" not in str(exc)
        else:
            assert all(c.shape == (len(lab), 2) and np.isin(lab, (0, 1)).all() for c, lab in parsed.values())


@needs_default
def test_segment_cli_points_with_and_without_clip(tmp_path, film, capsys):
    image, ref, lung = film
    from skimage.io import imsave

    inputs = tmp_path / "in"
    inputs.mkdir()
    imsave(inputs / "film.png", (image * 255).astype(np.uint8) if image.dtype != np.uint8 else image,
           check_contrast=False)
    box = mask_box(lung)
    _write(tmp_path / "boxes.csv", "file,x0,y0,x1,y1\nfilm.png," + ",".join(f"{v:g}" for v in box) + "\n")
    ys, xs = np.nonzero(lung)
    _write(tmp_path / "points.csv", f"film.png,{xs.mean():.1f},{ys.mean():.1f},1\n")
    args = ["segment", str(inputs), "--boxes", str(tmp_path / "boxes.csv"), "--points", str(tmp_path / "points.csv"),
            "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "clip")]) == 0
    assert main([*args, "--out", str(tmp_path / "free"), "--no-clip"]) == 0
    clipped = read_mask(tmp_path / "clip" / "film_mask.png") != 0
    free = read_mask(tmp_path / "free" / "film_mask.png") != 0
    _assert_within(clipped, box)
    assert free.sum() > clipped.sum()
    with (tmp_path / "clip" / "results.csv").open() as fh:
        row = next(csv.DictReader(fh))
    assert row["status"] == "ok"
    _write(tmp_path / "bad.csv", "file,x,y,label\nfilm.png,1,2,3\n")
    assert main([*args[:4], "--points", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "bad")]) != 0
    err = capsys.readouterr().err
    assert "bad.csv:2: (film.png) label is '3'" in err


def test_segment_cli_not_lung_points_alone_keep_the_default_box(tmp_path, nano_pth):
    """A file whose points are all 'not lung' (and no box) is prompted with them and the default box (such
    points say where the lung is not, never where it is); a 'lung' point alone is prompt enough."""
    from skimage.io import imsave

    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for name in ("neg.png", "pos.png"):
        imsave(inputs / name, rng.integers(0, 255, (128, 160), dtype=np.uint8), check_contrast=False)
    points = _write(tmp_path / "points.csv", "neg.png,40,50,0\npos.png,40,50,1\n")
    assert main(["segment", str(inputs), "--points", str(points), "--model", str(nano_pth), "--model-type",
                 "vit_nano", "--device", "cpu", "--out", str(tmp_path / "out")]) == 0
    with (tmp_path / "out" / "results.csv").open() as fh:
        rows = {Path(r["file"]).name: r for r in csv.DictReader(fh)}
    assert rows["neg.png"]["status"] == rows["pos.png"]["status"] == "ok"
    assert len(rows["neg.png"]["box"].split()) == 4 and rows["pos.png"]["box"] == ""
    assert rows["neg.png"]["points"] == "40.0 50.0 0" and rows["pos.png"]["points"] == "40.0 50.0 1"  # its prompt


def test_a_model_trained_on_boxes_only_says_so_when_clicked(nano_pth, cxr_dir, tmp_path):
    """A file of ours trained without clicks warns on a click; the bundled model (trained with clicks) and an
    official SAM file (trained with points) do not."""
    import torch

    from napari_adaqat import open_model
    from napari_adaqat.inference.segmenter import ModelRef
    from napari_adaqat.model.build import build_sam
    from napari_adaqat.model.formats.model_file import export_model

    torch.manual_seed(0)
    box_only = tmp_path / "box_only.safetensors"
    export_model(build_sam("vit_nano"), box_only, profile="fp32",
                 metadata={"provenance": {"train_config": {"click_rounds": 0}}})
    assert open_model(str(box_only), device="cpu").takes_clicks is False
    assert open_model("default", device="cpu").takes_clicks is True
    assert open_model(str(nano_pth), device="cpu", model_type="vit_nano").takes_clicks is True
    image = read_image(sorted((cxr_dir / "images").iterdir())[0]).pixels
    engine = Engine()
    clicked = engine.predict(image, np.array([30, 40, 480, 470]), ModelRef(box_only),
                             point_coords=np.array([[250.0, 300.0]]), point_labels=np.array([0]))
    assert "trained with boxes only" in clicked.summary()
    assert "trained with boxes only" not in engine.predict(image, np.array([30, 40, 480, 470]), ModelRef(box_only)).summary()
    default = engine.predict(image, np.array([30, 40, 480, 470]), ModelRef(), point_coords=np.array([[250.0, 300.0]]),
                             point_labels=np.array([0]))
    assert "trained with boxes only" not in default.summary()


def test_the_clean_up_keeps_a_hole_that_holds_a_not_lung_point():
    """Hole filling undid a "not lung" click inside a lung (a clinician QA find): a hole with a negative point in
    it stays a hole; other holes are filled as before, and without points nothing changes."""
    mask = np.zeros((120, 160), dtype=bool)
    mask[20:100, 20:70] = True
    mask[20:100, 90:140] = True
    mask[40:50, 30:40] = False  # the hole the click cut
    mask[60:70, 100:110] = False  # another hole, no click in it
    cleaned = finish_mask(mask, None, clean=True, negative_points=np.array([[35.0, 45.0]]))
    assert not cleaned[40:50, 30:40].any() and cleaned[60:70, 100:110].all()
    np.testing.assert_array_equal(finish_mask(mask, None, clean=True), finish_mask(mask, None, clean=True,
                                                                                   negative_points=np.empty((0, 2))))
    assert finish_mask(mask, None, clean=True)[40:50, 30:40].all()
