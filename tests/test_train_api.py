"""The Python way to train: the same run-folder contract, resume rule and SIGTERM handling as the CLI."""
import json
import signal
import subprocess
import sys
import time

import pytest

from napari_adaqat.train.config import TrainConfig, field_help, make_config, stage_defaults
from napari_adaqat.train.progress import read_progress

TINY = dict(preset="paper", model_type="vit_nano", mode="full", device="cpu", batch_size=4, patience=0,
            max_steps_per_epoch=1)


def _epochs(run) -> list[int]:
    return [r["epoch"] for r in read_progress(run / "progress.jsonl") if r["kind"] == "epoch"]


def test_import_does_not_load_torch():
    code = ("import sys, napari_adaqat.train as t; assert 'torch' not in sys.modules, 'torch imported'; "
            "assert callable(t) and 'train' in t.__all__")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_train_function_and_callable_package_share_the_run_folder_contract(dataset, tmp_path):
    from napari_adaqat.train import train
    import napari_adaqat.train as package

    run = tmp_path / "run"
    summary = train(data=dataset, out=run, epochs=1, **TINY)
    assert summary["epochs_run"] == 1 and (run / "checkpoints" / "last.safetensors").is_file()
    saved = json.loads((run / "config.json").read_text())
    assert saved["adalora"]["r_init"] == 48 and saved["qat"]["trainable"] == "paper" and saved["device"] == "cpu"
    with pytest.raises(FileExistsError, match="already holds a run"):
        package(data=dataset, out=run, epochs=1, **TINY)
    # resume: the saved config is the base, only what changes is given
    assert package(out=run, resume=True, epochs=2)["epochs_run"] == 1
    assert _epochs(run) == [1, 2]
    with pytest.raises(ValueError, match="nothing to resume"):
        train(data=dataset, out=tmp_path / "fresh", resume=True, **TINY)
    with pytest.raises(ValueError, match="inside the data folder"):
        train(data=dataset, out=dataset / "runs", epochs=1, **TINY)
    assert not (dataset / "runs").exists()


def test_sigterm_from_python_exits_143_without_temp_files_and_resumes(dataset, tmp_path):
    run = tmp_path / "run"
    code = (f"from napari_adaqat.train import train; train(data={str(dataset)!r}, out={str(run)!r}, preset='paper', "
            "model_type='vit_nano', mode='full', device='cpu', epochs=50, batch_size=1, patience=0)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    progress = run / "progress.jsonl"
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:  # stop during epoch 2, after a checkpoint
        if progress.is_file() and any(r["kind"] == "step" and r["epoch"] == 2 for r in read_progress(progress)):
            break
        time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read().decode()[-1000:]
    proc.send_signal(signal.SIGTERM)
    t0 = time.time()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()[-1000:]
    assert time.time() - t0 < 30
    assert not list((run / "checkpoints").glob(".*.tmp*"))
    done = _epochs(run)[-1]
    from napari_adaqat.train import train

    summary = train(out=run, resume=True, epochs=done + 1, max_steps_per_epoch=1)
    assert summary["epochs_run"] == 1 and _epochs(run)[-1] == done + 1
    starts = [r for r in read_progress(progress) if r["kind"] == "start"]
    assert starts[-1]["resumed_from"] == done and starts[-1]["preset"] == "paper"


def test_sigterm_handler_is_restored_after_a_run(dataset, tmp_path):
    from napari_adaqat.train.run import run

    before = signal.getsignal(signal.SIGTERM)
    cfg = make_config("paper", 1, {**{k: v for k, v in TINY.items() if k != "preset"}, "epochs": 1,
                                   "data": str(dataset), "out": str(tmp_path / "run")})
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    stale = tmp_path / "run" / "checkpoints" / ".last.safetensors.99999.0badc0de.tmp.safetensors"
    stale.write_bytes(b"half a checkpoint")
    run(cfg)
    assert signal.getsignal(signal.SIGTERM) is before
    assert not stale.exists()


def test_stage2_defaults_come_from_one_place():
    assert TrainConfig().lr_adapter == 5e-5 and TrainConfig().epochs == 25
    paper2, authors2 = TrainConfig(stage=2), TrainConfig(stage=2, qat={"trainable": "authors"})
    assert (paper2.lr_adapter, paper2.lr_decoder, paper2.lr_other, paper2.epochs) == (1e-6, 1e-6, 1e-6, 10)
    assert authors2.lr_other == 5e-7 and TrainConfig(stage=2, preset="authors").qat.trainable == "authors"
    assert make_config("authors", 2, {}).qat.trainable == "authors"
    assert make_config("authors", 2, {}).lr_decoder == stage_defaults(2, "authors")["lr_decoder"]
    assert make_config("paper", 2, {"lr_adapter": 3e-6}).lr_adapter == 3e-6


def test_old_flat_configs_still_load_and_help_comes_from_the_fields(tmp_path):
    old = {"stage": 2, "preset": "authors", "r_init": 16, "r_target": 8, "prune_epochs": [2], "budget": "per_block",
           "targets": ["attn.qkv"], "qat_variant": "decoder", "quantize_extra": True, "lr_adapter": "2e-7"}
    cfg = TrainConfig.from_dict(old)
    assert (cfg.adalora.r_init, cfg.adalora.prune_epochs, cfg.adalora.budget) == (16, (2,), "per_block")
    assert (cfg.qat.variant, cfg.qat.quantize_extra, cfg.qat.trainable) == ("decoder", True, "authors")
    assert cfg.lr_adapter == 2e-7 and cfg.lr_decoder == 5e-7
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    flat_yaml = tmp_path / "old.yaml"
    flat_yaml.write_text("stage1:\n  r_init: 12\n  r_target: 6\n  budget: per_block\nstage2:\n  qat_variant: decoder\n")
    assert make_config(str(flat_yaml), 1, {"adalora.r_target": 4}).adalora.r_target == 4
    assert make_config(str(flat_yaml), 2, {}).qat.variant == "decoder"
    with pytest.raises(ValueError, match="unknown training options"):
        TrainConfig.from_dict({"adalora": {"r_int": 3}})
    assert "Stage 2" in field_help("epochs") and field_help("budget") == field_help("adalora.budget")
    result = subprocess.run([sys.executable, "-m", "napari_adaqat", "train", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and field_help("qat.variant")[:40] in " ".join(result.stdout.split())


def test_stage2_from_a_run_keeps_its_validation_films_unseen(tmp_path, cxr_dir):
    """Films annotated after Stage 1 change the seeded cut: Stage 2 --from keeps Stage 1's split (its validation
    films never trained on) and trains on the new films too."""
    import shutil
    from napari_adaqat.train import train

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    films = sorted((cxr_dir / "images").glob("*.png"))

    def add(k: int) -> None:
        film = films[k % len(films)]
        shutil.copy(film, data / "images" / f"f{k:02d}.png")
        shutil.copy(cxr_dir / "masks" / film.name, data / "masks" / f"f{k:02d}.png")

    for k in range(12):
        add(k)
    run1, run2 = tmp_path / "s1", tmp_path / "s2"
    train(data=data, out=run1, epochs=1, **TINY)
    for k in range(12, 20):  # annotated since: the seeded cut of 20 films differs from that of 12
        add(k)
    train(data=data, out=run2, stage=2, from_run=run1, epochs=1, qat={"trainable": "authors"},
          **{**TINY, "mode": None})
    first, second = (json.loads((run / "split.json").read_text()) for run in (run1, run2))
    assert second["val"] == first["val"] and second["test"] == first["test"]
    assert second["train"] == sorted(set(first["train"]) | {f"f{k:02d}" for k in range(12, 20)})
