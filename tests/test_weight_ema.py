"""The weight EMA (``ema_decay``): its arithmetic, what the loop validates and saves, and resume."""
import pytest
import torch
from torch import nn

from napari_adaqat.model.formats.container import read_tensors
from napari_adaqat.train.config import make_config
from napari_adaqat.train.ema import WeightEMA
from napari_adaqat.train.run import run as train


def test_ema_follows_the_weights_and_swaps_them_in_and_out():
    layer = nn.Linear(3, 2)
    layer.bias.requires_grad_(False)  # frozen parameters are not averaged
    start = layer.weight.detach().clone()
    ema = WeightEMA(layer, decay=0.5)
    assert ema.names == ["weight"]
    with torch.no_grad():
        layer.weight.add_(1.0)
    ema.update()  # first update: d = min(0.5, 1/10) = 0.1
    expected = 0.1 * start + 0.9 * (start + 1.0)
    torch.testing.assert_close(ema.shadow[0], expected)
    live = layer.weight.detach().clone()
    with ema.applied():
        torch.testing.assert_close(layer.weight.detach(), expected)
    torch.testing.assert_close(layer.weight.detach(), live)
    torch.testing.assert_close(ema.shadow[0], expected)  # the swap back restores both sides
    with pytest.raises(RuntimeError, match="inside"):
        with ema.applied():
            raise RuntimeError("inside")
    torch.testing.assert_close(layer.weight.detach(), live)  # also when the block raises


def test_ema_file_is_only_resumed_at_its_own_epoch(tmp_path):
    layer = nn.Linear(3, 2)
    ema = WeightEMA(layer, decay=0.9)
    ema.update()
    ema.save(tmp_path / "ema.safetensors", epoch=4)
    other = WeightEMA(nn.Linear(3, 2), decay=0.9)
    assert not other.load(tmp_path / "ema.safetensors", epoch=5)  # stale: last.safetensors is newer
    assert not other.load(tmp_path / "missing.safetensors", epoch=4)
    assert other.load(tmp_path / "ema.safetensors", epoch=4) and other.updates == 1
    torch.testing.assert_close(other.shadow[0], ema.shadow[0])
    with pytest.raises(ValueError, match="do not match"):
        WeightEMA(nn.Linear(4, 2), decay=0.9).load(tmp_path / "ema.safetensors", epoch=4)


def test_ema_decay_out_of_range_is_a_one_line_error(tmp_path):
    with pytest.raises(ValueError, match="ema_decay"):
        make_config(None, 1, dict(data=str(tmp_path), out=str(tmp_path / "r"), ema_decay=1.0))


def _config(data, out, epochs, **kw):
    base = dict(data=str(data), out=str(out), model_type="vit_nano", device="cpu", batch_size=4, patience=0,
                mode="full", epochs=epochs, lr_decoder=2e-3, lr_other=2e-3, ema_decay=0.9, **kw)
    return make_config(None, 1, base)


def test_training_validates_and_saves_the_average_and_resumes_it(dataset, tmp_path):
    name = "image_encoder.patch_embed.proj.weight"
    one = tmp_path / "one"  # one epoch: it always improves on "no best yet", so best = that epoch's average
    train(_config(dataset, one, 1))
    best = read_tensors(one / "checkpoints" / "best.safetensors")
    last = read_tensors(one / "checkpoints" / "last.safetensors")
    average = read_tensors(one / "checkpoints" / "ema_last.safetensors")
    torch.testing.assert_close(best[name], average[name])
    assert not torch.equal(average[name], last[name])  # last keeps the live weights, for --resume
    # 3 epochs straight, or 2 and then resume to 3: the same average
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(_config(dataset, straight, 3))
    train(_config(dataset, split, 2))
    train(_config(dataset, split, 3), resume=True)
    a = read_tensors(straight / "checkpoints" / "ema_last.safetensors")[name]
    b = read_tensors(split / "checkpoints" / "ema_last.safetensors")[name]
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    assert not torch.equal(a, average[name])  # and it moved on from epoch 1


def test_rank_pruning_keeps_binary_masks_under_the_average(dataset, tmp_path, nano_pth):
    cfg = make_config(None, 1, dict(data=str(dataset), out=str(tmp_path / "ada"), model_type="vit_nano",
                                    checkpoint=str(nano_pth), device="cpu", batch_size=2, epochs=3, patience=0,
                                    mode="adalora", lr_adapter=1e-3, ema_decay=0.9,
                                    adalora={"r_init": 8, "r_target": 4, "prune_epochs": [2]}))
    train(cfg)
    best = read_tensors(tmp_path / "ada" / "checkpoints" / "best.safetensors")
    masks = [t for k, t in best.items() if k.endswith("rank_mask")]
    assert masks and all(set(m.unique().tolist()) <= {0.0, 1.0} for m in masks)
    assert sum(int(m.sum()) for m in masks) < sum(m.numel() for m in masks)  # pruning happened
