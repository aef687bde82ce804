"""A ``--stage all`` run's folder given where a stage run or a model file is wanted (newcomer QA): ``adaqat info``
reads its model; ``adaqat export`` and ``adaqat train --stage 2 --from`` name what the folder holds; ``adaqat export``
refuses an --out that segment and the docks would not read (``model.pt``)."""
from __future__ import annotations

import json
import shutil

from napari_adaqat.cli import main
from napari_adaqat.model.loading import DEFAULT_MODEL


def _chain_folder(tmp_path):
    run = tmp_path / "runs" / "mine"
    run.mkdir(parents=True)
    (run / "chain.json").write_text("{}")
    shutil.copy(DEFAULT_MODEL, run / "model_int8.safetensors")
    return run


def test_a_chain_folder_is_read_or_named(tmp_path, capsys):
    run = _chain_folder(tmp_path)
    assert main(["info", str(run)]) == 0
    assert json.loads(capsys.readouterr().out)["file"] == str(run / "model_int8.safetensors")
    assert main(["export", str(run), "--out", str(tmp_path / "m.safetensors")]) != 0
    err = capsys.readouterr().err
    assert f"it is an adaqat train --stage all run, whose model is {run / 'model_int8.safetensors'} and whose " \
           f"Stage 2 run is {run / 'stage2'}" in err
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    for name in ("a.png", "b.png"):  # (a data folder that passes its own check first)
        shutil.copy(DEFAULT_MODEL.parent / "sample" / "chest_xray.png", data / "images" / name)
        shutil.copy(DEFAULT_MODEL.parent / "sample" / "chest_xray_mask.png", data / "masks" / name)
    assert main(["train", "--stage", "2", "--from", str(run), "--data", str(data), "--out", str(tmp_path / "s2")]) != 0
    assert f"whose Stage 1 run is {run / 'stage1'}" in capsys.readouterr().err


def test_export_refuses_an_out_that_is_not_safetensors(tmp_path, capsys):
    assert main(["export", str(DEFAULT_MODEL), "--out", str(tmp_path / "model.pt")]) == 2
    assert "adaqat writes safetensors model files; name it model.safetensors" in capsys.readouterr().err
    assert not (tmp_path / "model.pt").exists()
