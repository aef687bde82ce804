"""A model file that carries a U-Net's vote (issue 32, model/vote_unet.py): the box-alone logits are the model's
plus the vote's; clicks win where they flip the model's box-alone answer; the file keeps the model's tensors bit for
bit; a fine-tune leaves the vote out; the U-Net reference's files load."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from napari_adaqat import open_model
from napari_adaqat.inference.predictor import BoxPredictor
from napari_adaqat.model.build import ModelLoadError, build_sam, spec_from_metadata
from napari_adaqat.model.formats.model_file import export_model, load_model_file
from napari_adaqat.model.formats.vote_file import add_vote, remove_vote
from napari_adaqat.model.vote_unet import VOTE_SIZE, VoteUNet, combine, detach_vote_unet
from napari_adaqat.report.model_info import file_report

BOX = np.array([10, 12, 150, 120])
POINTS, LABELS = np.array([[40.0, 50.0], [120.0, 90.0]]), np.array([0, 1])


def _image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.random((140, 180)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(a hybrid_nano_refine model file, a U-Net's weights saved as the U-Net reference saves them, the model
    file with that U-Net as its vote)."""
    root = tmp_path_factory.mktemp("vote")
    torch.manual_seed(0)
    sam = build_sam("hybrid_nano_refine")
    with torch.no_grad():
        for p in sam.mask_refiner.parameters():
            p.normal_(0, 0.3)
    model = root / "model.safetensors"
    export_model(sam, model, profile="fp32")
    net = VoteUNet()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.2)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    for name in [k for k in state if k.endswith("running_var")]:  # as torch's BatchNorm2d saves them
        state[name[: -len("running_var")] + "num_batches_tracked"] = torch.tensor(7)
    unet = root / "unet.safetensors"
    save_file(state, str(unet))
    voted = add_vote(model, unet, root / "voted.safetensors", {"epochs": 60})
    return model, unet, voted


def _vote_logits(unet, image) -> torch.Tensor:
    """The U-Net's logits at the film's size, computed here from its own file."""
    from napari_adaqat.data.transforms import prepare_image
    from napari_adaqat.model.logit_grid import FRESH_MODEL_OFFSET, upsample_on_grid
    net = VoteUNet()
    net.load_state_dict(load_file(str(unet)))
    net.eval()
    p = prepare_image(image, VOTE_SIZE, (123.675, 116.28, 103.53), (58.395, 57.12, 57.375))
    with torch.no_grad():
        low = net(p.tensor[None])[0, 0]
    return upsample_on_grid(low, VOTE_SIZE, p.input_size, p.original_size, FRESH_MODEL_OFFSET)


def test_the_file_keeps_the_models_tensors_and_records_the_vote(files):
    model, unet, voted = files
    before, after = load_file(str(model)), load_file(str(voted))
    assert set(after) - set(before) and all(k.startswith("vote_unet.") for k in set(after) - set(before))
    assert all(torch.equal(before[k], after[k]) for k in before)  # bit for bit
    assert not any(k.endswith("num_batches_tracked") for k in after)  # model files hold floats only
    meta = load_model_file(voted).meta
    assert meta["spec"]["vote_unet"] == 16 and meta["vote"]["epochs"] == 60 and meta["vote"]["parameters"] > 1e6
    assert spec_from_metadata(voted, meta["spec"]).vote_unet == 16
    parts = file_report(voted)["parameters"]  # adaqat info: every part, the vote and the refiner included
    assert parts["vote_unet"] == meta["vote"]["parameters"] and parts["mask_refiner"] > 0
    assert file_report(voted)["vote"]["epochs"] == 60  # what vote_file recorded, shown by adaqat info
    assert sum(v for k, v in parts.items() if k != "total") == parts["total"]
    narrow = voted.parent / "unet8.safetensors"  # a narrower vote: its width is read from its weights
    save_file(VoteUNet(8).state_dict(), str(narrow))
    small = load_model_file(add_vote(model, narrow, voted.parent / "voted8.safetensors"))
    assert small.spec.vote_unet == 8 and small.vote_unet.head.in_channels == 8
    BoxPredictor(small).set_image(_image()).predict(BOX)
    with pytest.raises(ValueError, match="exists"):  # nothing is overwritten, the model least of all
        add_vote(model, unet, model)
    with pytest.raises(ModelLoadError, match="already carries a vote"):
        add_vote(voted, unet, voted.parent / "twice.safetensors")
    with pytest.raises(ModelLoadError, match="not a vote U-Net"):
        add_vote(model, model, voted.parent / "wrong.safetensors")
    assert not (voted.parent / "twice.safetensors").exists() and not (voted.parent / "wrong.safetensors").exists()


def test_box_alone_is_the_sum_of_the_two_networks_logits(files):
    model, unet, voted = files
    image = _image()
    plain = BoxPredictor(load_model_file(model)).set_image(image).predict(BOX)
    pred = BoxPredictor(load_model_file(voted)).set_image(image).predict(BOX)
    vote = _vote_logits(unet, image)
    torch.testing.assert_close(pred.logits, (plain.logits + vote) / 2, atol=1e-4, rtol=1e-4)  # the mean
    np.testing.assert_array_equal(pred.masks, (plain.logits + vote > 0).numpy())
    assert (pred.masks != plain.masks).mean() > 0.01  # the vote changes the mask
    torch.testing.assert_close(pred.low_res_logits, plain.low_res_logits)  # the next mask prompt: the model's own


def test_where_clicks_flip_the_models_answer_the_model_decides(files):
    model, unet, voted = files
    image = _image()
    plain = BoxPredictor(load_model_file(model)).set_image(image)
    alone, clicked = plain.predict(BOX).logits, plain.predict(BOX, POINTS, LABELS).logits
    flipped = (alone > 0) != (clicked > 0)
    assert flipped.any() and (~flipped).any()
    predictor = BoxPredictor(load_model_file(voted)).set_image(image)
    pred = predictor.predict(BOX, POINTS, LABELS)  # no box-alone prediction before: computed for the guard
    vote = _vote_logits(unet, image)
    torch.testing.assert_close(pred.logits[flipped], clicked[flipped], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(combine(clicked, vote, alone), pred.logits, atol=1e-4, rtol=1e-4)
    mean = pred.logits == (clicked + vote) / 2
    assert mean.float().mean() > 0.5  # elsewhere, mostly, the two networks' mean
    # points alone (no box): the model alone
    torch.testing.assert_close(predictor.predict(point_coords=POINTS, point_labels=LABELS).logits,
                               plain.predict(point_coords=POINTS, point_labels=LABELS).logits)


def test_one_box_with_several_rows_of_clicks_decodes_the_box_alone_once(files, monkeypatch):
    _model, _unet, voted = files
    rows = np.stack([POINTS, POINTS[::-1], POINTS + 5])  # (3, 2, 2): three rows of clicks, one box
    one_by_one = BoxPredictor(load_model_file(voted)).set_image(_image())
    expected = torch.cat([one_by_one.predict(BOX, r, LABELS).logits for r in rows])
    predictor = BoxPredictor(load_model_file(voted)).set_image(_image())
    decoded = []
    decode = predictor._decode
    monkeypatch.setattr(predictor, "_decode", lambda b, *rest: decoded.append(len(b)) or decode(b, *rest))
    torch.testing.assert_close(predictor.predict(BOX, rows, np.stack([LABELS] * 3)).logits, expected,
                               atol=1e-4, rtol=1e-4)
    assert decoded == [3, 1]  # the three rows, then their one box alone


def test_a_click_that_sides_with_the_model_against_the_vote_wins_and_a_far_click_changes_nothing():
    """The vote overruled the model at a pixel (model +1, vote -5: shown 'not lung'); a positive click there pushes
    the model to +3: the model decides (lung).  A click elsewhere that moves it only to +1.2 leaves the vote's answer."""
    vote, alone = torch.tensor([[-5.0, -5.0]]), torch.tensor([[[1.0, 1.0]]])
    clicked = torch.tensor([[[3.0, 1.2]]])
    out = combine(clicked, vote, alone)
    assert out[0, 0, 0] == 3.0 and out[0, 0, 1] == pytest.approx(-1.9)
    assert combine(torch.tensor([[[-0.5]]]), torch.tensor([[4.0]]), torch.tensor([[[2.0]]])) == -0.5  # flipped
    assert combine(clicked, vote)[0, 0, 0] == -1.0  # a box alone: the mean


def test_a_failed_set_image_leaves_no_image_half_set(files, monkeypatch):
    _model, _unet, voted = files
    from napari_adaqat.inference import predictor as module
    p = BoxPredictor(load_model_file(voted)).set_image(_image())
    other = _image()[::-1].copy()
    monkeypatch.setattr(module, "film_vote", lambda *a: (_ for _ in ()).throw(MemoryError("no room")))
    with pytest.raises(MemoryError):
        p.set_image(other)
    with pytest.raises(RuntimeError, match="set_image"):
        p.predict(BOX)  # not the previous film's answer
    monkeypatch.undo()
    again = p.set_image(other).predict(BOX).logits
    torch.testing.assert_close(again, BoxPredictor(load_model_file(voted)).set_image(other).predict(BOX).logits)


def test_the_public_api_and_a_fine_tune(files, tmp_path):
    model, _unet, voted = files
    seg = open_model(voted, device="cpu")
    seg.set_image(_image())
    mask, pred = seg.predict(BOX)
    assert mask.shape == (140, 180) and not mask[:, 160:].any()  # clipped to the box as ever
    from napari_adaqat.train.config import make_config
    from napari_adaqat.train.start_model import build_stage1
    cfg = make_config(None, 1, {"mode": "adalora", "checkpoint": str(voted), "data": str(tmp_path),
                                "out": str(tmp_path / "run")})
    sam, _description, provenance = build_stage1(cfg)
    assert provenance["vote_unet_left_out"] and not hasattr(sam, "vote_unet") and not sam.spec.vote_unet
    assert not any(name.startswith("vote_unet.") for name in sam.state_dict())
    assert not detach_vote_unet(sam)
    assert json.loads(json.dumps(sam.spec.to_dict())).get("vote_unet") is None  # not written when False


def test_vote_file_help_teaches_and_bad_inputs_are_one_line(files, tmp_path, capsys):
    from napari_adaqat.model.formats.vote_file import main
    model, unet, _ = files
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "vote_train" in out and ":class:" not in out and "issue 32" not in out
    with pytest.raises(SystemExit) as exit_:
        main([str(model), str(unet), str(tmp_path / "a.safetensors"), "--note", "{bad"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "--note is not JSON" in err and "\n" not in err


def test_vote_file_takes_vote_trains_folder_and_refuses_an_unfinished_run(files, tmp_path):
    import shutil
    model, unet, _ = files
    (tmp_path / "vote").mkdir()
    shutil.copy(unet, tmp_path / "vote" / "unet.safetensors")
    voted = add_vote(model, tmp_path / "vote", tmp_path / "voted.safetensors")  # the folder vote_train wrote
    assert load_model_file(voted).spec.vote_unet == VoteUNet.from_state(load_file(str(unet))).width
    shutil.copy(unet, tmp_path / "vote" / "resume.safetensors")  # a stopped run: no unet.json yet
    with pytest.raises(ValueError, match="is not finished; run vote_train on it again"):
        add_vote(model, tmp_path / "vote" / "unet.safetensors", tmp_path / "voted2.safetensors")
    assert not (tmp_path / "voted2.safetensors").exists()


def test_the_quality_score_reads_the_models_own_probabilities(files, tmp_path):
    """A vote's softer mean logits put every film under the review threshold (measured on the model's own
    probabilities): the score reads the model's own, against the voted mask (BENCHMARKS.md, fifteenth session)."""
    from PIL import Image

    from napari_adaqat.inference.batch import segment_files
    from napari_adaqat.inference.engine import Engine
    from napari_adaqat.inference.quality import mask_quality
    from napari_adaqat.inference.segmenter import ModelRef

    model, _unet, voted = files
    image = _image()
    engine = Engine()
    plain, with_vote = (engine.predict(image, BOX, ModelRef(path), "cpu") for path in (model, voted))
    assert plain.own_logits is None and plain.p_own is plain.p_model
    np.testing.assert_allclose(with_vote.p_own, plain.p_model, atol=1e-5)  # the same model's own probabilities
    assert not np.allclose(with_vote.p_model, plain.p_model, atol=1e-3)  # not the voted ones
    Image.fromarray(image).save(tmp_path / "film.png")
    [row] = segment_files([tmp_path / "film.png"], ModelRef(voted), tmp_path / "masks", boxes={"film.png": BOX})
    quality = row.quality
    assert row.status == "ok" and quality == mask_quality(with_vote.p_own, with_vote.mask).score
    assert quality != mask_quality(with_vote.p_model, with_vote.mask).score


def test_table2_counts_a_votes_parameters_as_trained(tmp_path):
    """The paper's Table 2 reduction (total ÷ trainable) of a voted file: the vote is trained whole."""
    from napari_adaqat.report.tables import table2

    vote = tmp_path / "unet.safetensors"
    save_file(VoteUNet(2).state_dict(), str(vote))
    bundled = open_model("default").path  # (it carries a vote of its own: written here without it)
    plain = remove_vote(bundled, tmp_path / "plain.safetensors")
    voted = add_vote(plain, vote, tmp_path / "voted.safetensors")
    rows = {r["model"]: r for r in table2({"plain": plain, "voted": voted})}
    n = sum(p.numel() for p in VoteUNet(2).parameters())
    assert rows["plain"]["trainable_params"] and rows["voted"]["total_params"] == rows["plain"]["total_params"] + n
    assert rows["voted"]["trainable_params"] == rows["plain"]["trainable_params"] + n
