"""Batch and Train docks, second QA pass: several input folders named as the output tree names them, a table of
10,000 files that does not freeze the viewer (filling, a rerun's skipped files, sorting), the fine-tune ETA
without the first epoch's start-up (before the run and during it), and a left training run's records read
again from its logs rather than kept in the dock.  Real viewer (Xvfb), real films, the bundled model."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("napari")

from qtpy.QtCore import Qt  # noqa: E402

# imported at collection, before any viewer creates an OpenGL context (see widgets/_compat.py)
from napari_adaqat.inference.batch import ResultRow  # noqa: E402
from napari_adaqat.model import loading  # noqa: E402
from napari_adaqat.train.chain import Chain  # noqa: E402
from napari_adaqat.train.config import make_config  # noqa: E402
from napari_adaqat.widgets import _continue as cont  # noqa: E402
from napari_adaqat.widgets._batch_job import Scanned  # noqa: E402
sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from batch_table_stall import StallMeter  # noqa: E402
from napari_adaqat.train.eta import TimeLeft  # noqa: E402
from napari_adaqat.widgets._train_process import ProgressFollower, status_text  # noqa: E402
from napari_adaqat.widgets.batch import BatchWidget  # noqa: E402
from test_napari_batch_recursive import small_films  # noqa: E402  (tests/ is on sys.path)

pytestmark = pytest.mark.gui
PLUGIN, WIDGET = "napari-adaqat", "Batch segment (AdaLoRA-QAT)"
WAIT_MS = 180_000
bundled = pytest.mark.skipif(not loading.DEFAULT_MODEL.is_file(), reason="no bundled model")


@bundled
def test_two_input_folders_of_one_name_show_the_output_trees_names(make_napari_viewer, qtbot, tmp_path, cxr_dir):
    """Two sites' exports, both called 'export', each P1/IM0001.png: the masks go to OUT/export/P1 and
    OUT/export_2/P1; before, the table said 'P1/IM0001.png' twice."""
    site_a, site_b = tmp_path / "a" / "export", tmp_path / "b" / "export"
    for site in (site_a, site_b):
        small_films(site / "P1", cxr_dir, ["IM0001.png"])
    out = tmp_path / "out"
    _dock, widget = make_napari_viewer().window.add_plugin_dock_widget(PLUGIN, WIDGET)
    widget.input_folder.value, widget.out.value, widget.device.value = str(site_a), str(out), "cpu"
    widget.input_files.line_edit.value = str(site_b)  # a second folder, typed (or dropped) there
    widget.recursive.value = True
    assert widget.run(), widget.status.value
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
    assert widget.last_error is None, widget.status.value
    shown = [r["file"] for r in widget.table_rows()]
    assert shown == ["export/P1/IM0001.png", "export_2/P1/IM0001.png"]
    with (out / "results.csv").open(newline="", encoding="utf-8") as fh:
        masks = {r["file"]: Path(r["mask"]) for r in csv.DictReader(fh)}
    for row, name in enumerate(shown):  # each row names the folder its mask is in
        film = widget.table_model.path(row)
        assert masks[str(film)] == out / Path(name).parent / "IM0001_mask.png" and masks[str(film)].is_file()


def _stalls(qtbot, action) -> float:
    """The longest the GUI thread did not come back to its event loop while ``action`` ran and Qt settled."""
    meter = StallMeter()
    qtbot.wait(50)
    meter.mark()
    action()
    qtbot.waitUntil(lambda: meter.ticks() >= 3, timeout=60_000)
    qtbot.wait(50)
    meter.timer.stop()
    return meter.longest()


def test_ten_thousand_files_fill_and_update_the_table_without_freezing(qtbot, tmp_path):
    """Before: a QTableWidgetItem per cell (0.75-4 s to fill 10,000 rows on the GUI thread) and columns sized to
    their contents (Qt measured 1,000 rows again per finished file: a rerun of 10,000 done files froze napari
    for many minutes)."""
    widget = BatchWidget(None)
    qtbot.addWidget(widget.native)
    widget.out.value = str(tmp_path / "out")
    widget.native.resize(420, 900)
    widget.native.show()
    root = tmp_path / "export"
    files = [root / f"P{i // 100:03d}" / f"IM{i % 100:04d}.dcm" for i in range(10_000)]
    done = {str(p): {"file": str(p), "status": "ok", "area_px": "51234", "seconds": "0.8", "mask": "m",
                     "quality": f"{0.9 + (i % 97) / 1000:.3f}", "review": "0"} for i, p in enumerate(files)}
    widget._worker = object()  # as while a run is on
    fill = _stalls(qtbot, lambda: widget._row_signal.scanned.emit(Scanned(files, [root], done, set(done), "")))
    assert widget.table_model.rowCount() == 10_000 and widget.table_rows()[1]["file"] == "P000/IM0001.dcm"
    assert fill < 0.5, f"the GUI thread was held {fill:.2f} s filling the table"

    # the worker sends the files done before in lists, about one per 0.1 s, and the GUI thread goes back to its
    # event loop between them: the longest stall is one list's (all 20 lists in one go took 0.3-0.54 s on 2 cores)
    lists = [[ResultRow(file=str(p), status="skipped") for p in files[i:i + 500]] for i in range(0, len(files), 500)]
    taking = max(_stalls(qtbot, lambda rows=rows: widget._row_signal.row.emit(rows)) for rows in lists)
    qtbot.waitUntil(lambda: widget.progress.value == 10_000, timeout=60_000)
    assert taking < 0.5, f"the GUI thread was held {taking:.2f} s taking a list of 500 skipped files"
    assert widget.progress.native.text() == "10000 / 10000" and widget.table_rows()[-1]["status"] == "skipped"
    widget._worker = None
    widget._on_finished()
    assert widget.status.value.startswith("0 segmented, 10000 done before, 0 failed")
    widget.table.sortItems(5, Qt.SortOrder.DescendingOrder)  # quality: the header click
    quality = [float(r["quality"]) for r in widget.table_rows()]
    assert quality == sorted(quality, reverse=True) and quality[0] == 0.996


def test_an_error_sorts_below_every_number_and_keeps_its_row_when_sorted(qtbot, tmp_path):
    widget = BatchWidget(None)
    qtbot.addWidget(widget.native)
    files = [tmp_path / n for n in ("a.png", "b.png", "c.png")]
    widget._worker = object()
    widget._on_scanned(Scanned(files, [], {}, set(), ""))
    widget._on_row([ResultRow(file=str(files[0]), status="ok", quality=0.91, area_px=10),
                    ResultRow(file=str(files[1]), status="error", error=f"{files[1]}: not an image")])
    widget.table.sortByColumn(5, Qt.SortOrder.DescendingOrder)  # quality: the number first, no quality below
    assert [r["file"] for r in widget.table_rows()] == ["a.png", "b.png", "c.png"]
    widget._on_row([ResultRow(file=str(files[2]), status="ok", quality=0.97, area_px=12)])  # its row, sorted or not
    assert [(r["file"], r["quality"]) for r in widget.table_rows()] == [("a.png", "0.91"), ("b.png", ""),
                                                                          ("c.png", "0.97")]
    widget.table.sortByColumn(5, Qt.SortOrder.DescendingOrder)
    assert [r["file"] for r in widget.table_rows()] == ["c.png", "a.png", "b.png"]
    error = widget.table_model.index(2, 2)
    assert widget.table_model.data(error) == "not an image"  # the file is in the first column
    assert widget.table_model.data(error, Qt.ItemDataRole.ToolTipRole) == f"{files[1]}: not an image"
    widget.table.doubleClicked.emit(widget.table_model.index(0, 0))  # no viewer: nothing opens, nothing fails


# A real 7-film --preset finetune Stage 1 (tmp run of this QA, batch size 4: 2 steps an epoch, 1 thread): the
# records' times, as written to its progress.jsonl (eta_s as the loop counted it before train/eta.py)
REAL_STAGE1 = [
    {"kind": "start", "time": 1796521783.751, "epochs": 5},
    {"kind": "step", "time": 1796521792.916, "epoch": 1, "step": 1, "steps": 2},
    {"kind": "step", "time": 1796521799.888, "epoch": 1, "step": 2, "steps": 2},
    {"kind": "epoch", "time": 1796521801.138, "epoch": 1, "epochs": 5, "seconds": 17.2, "eta_s": 68.8},
    {"kind": "step", "time": 1796521806.156, "epoch": 2, "step": 1, "steps": 2},
    {"kind": "step", "time": 1796521812.646, "epoch": 2, "step": 2, "steps": 2},
    {"kind": "epoch", "time": 1796521814.329, "epoch": 2, "epochs": 5, "seconds": 30.19, "eta_s": 45.3},
    {"kind": "epoch", "time": 1796521827.566, "epoch": 3, "epochs": 5, "seconds": 43.67, "eta_s": 29.1},
]


def test_the_time_left_leaves_out_the_first_epochs_start_up():
    clock = TimeLeft()
    epochs = [new for new in map(clock.take, REAL_STAGE1) if new["kind"] == "epoch"]
    first_step = REAL_STAGE1[2]["time"] - REAL_STAGE1[1]["time"]  # step 2 of epoch 1, at the steady pace
    assert epochs[0]["eta_s"] == round((REAL_STAGE1[3]["time"] - REAL_STAGE1[1]["time"] + first_step) * 4, 1)
    assert epochs[0]["eta_s"] < 0.9 * REAL_STAGE1[3]["eta_s"]  # the loop's: the start-up in every epoch
    assert epochs[1]["eta_s"] == round((30.19 - 17.2) * 3, 1) and epochs[2]["eta_s"] == round((43.67 - 17.2) / 2 * 2, 1)
    assert "ETA 39 s" in status_text(epochs[1])
    resumed = TimeLeft()  # a resumed run starts up again: its first epoch is measured anew
    for rec in REAL_STAGE1[:7]:
        resumed.take(rec)
    again = [resumed.take(rec) for rec in ({"kind": "start", "epochs": 5}, REAL_STAGE1[-1])]
    assert again[1]["eta_s"] is None and "ETA after the next epoch" in status_text(again[1])  # not 1.8x too high
    last = TimeLeft().take({**REAL_STAGE1[-1], "epoch": 5})
    assert last["eta_s"] == 0 and "ETA 0 s" in status_text(last)  # the last epoch: nothing left


def test_the_train_docks_status_shows_the_time_left_without_the_start_up(make_napari_viewer):
    from napari_adaqat.widgets.train import TrainWidget

    widget = TrainWidget(make_napari_viewer())
    clock = TimeLeft()  # the records as the training loop writes them now
    one_step = [clock.take(r) for r in REAL_STAGE1[:4] if r.get("step") != 2]  # epoch 1 as one step: pace unknown
    widget._take(one_step)
    assert "ETA after the next epoch" in widget.status.value and "ETA 1m09s" not in widget.status.value
    widget.process = object()  # (running: the line over the plot shows the ETA)
    widget._take([])
    assert widget.plot_info.value.endswith("ETA after the next epoch")
    widget.process = None
    widget._take([clock.take(r) for r in REAL_STAGE1[4:7]])
    assert widget.last_epoch["eta_s"] == 39.0 and "ETA 39 s" in widget.status.value
    assert "ETA 45 s" not in widget.status.value  # the loop's eta_s


@pytest.mark.parametrize(("n_train", "stage1_epochs", "stage2_epochs", "measured_s"), [
    (5, 8, 2, 34.5),  # the fine-tune loop's walk (notes: 5 / 1 films, 8 + 2 epochs, 2 busy cores): said 78 s
    (16, 8, 2, 101.0),  # finetune.yaml: 20 films (16 train), 99-103 s on a 2-core CPU: said 162 s
])
def test_the_fine_tune_eta_before_the_run_is_near_the_measured_times(tmp_path, n_train, stage1_epochs, stage2_epochs,
                                                                     measured_s):
    """The times were measured without the vote step (vote_epochs 0); the step's own measured cost is added to
    the estimate: 19 s for 16 films (a 20-film chain: 75 s with it, 56 s without, idle 2-core CPU)."""
    def chain(**options) -> Chain:
        config = make_config("finetune", 1, {"data": str(tmp_path), "out": str(tmp_path / "run" / "stage1"), **options})
        return Chain.from_config(config, tmp_path / "run")

    without = chain(vote_epochs=0)
    assert (without.stage1().epochs, without.stage2().epochs) == (stage1_epochs, stage2_epochs)
    said = cont.eta_seconds(without, n_train)
    assert 0.8 * measured_s <= said <= 1.35 * measured_s, said
    vote_s = cont.eta_seconds(chain(), n_train) - said  # the bundled model's vote, 15 epochs on the train films
    assert 0.8 * 19.0 * n_train / 16 <= vote_s <= 1.35 * 19.0 * n_train / 16, vote_s


def test_the_records_a_run_showed_are_read_again_from_its_log(tmp_path):
    """A closed Train panel's run keeps no copy of its records: the next dock reads them from progress.jsonl."""
    log = tmp_path / "progress.jsonl"
    log.write_text(json.dumps({"kind": "epoch", "epoch": 1}) + "\n")  # a resumed run's earlier epoch
    follower = ProgressFollower.from_end(log)
    with log.open("a") as fh:
        fh.write(json.dumps({"kind": "step", "epoch": 2, "step": 1}) + "\n" + '{"kind": "ep')  # a half line
    assert follower.read_new() == [{"kind": "step", "epoch": 2, "step": 1}]
    assert follower.taken() == [{"kind": "step", "epoch": 2, "step": 1}]  # only what this run showed
    with log.open("a") as fh:
        fh.write('och", "epoch": 2}\n')
    assert follower.read_new() == [{"kind": "epoch", "epoch": 2}] and len(follower.taken()) == 2
    log.unlink()  # a fresh run in the same folder: a new file
    log.write_text(json.dumps({"kind": "start"}) + "\n")
    assert follower.read_new() == [{"kind": "start"}] and follower.taken() == [{"kind": "start"}]


def test_the_train_status_stops_asking_for_folders_once_they_are_there(make_napari_viewer, tmp_path):
    """Before: 'Choose a data folder and a run folder, then Start.' stayed under a filled form."""
    from napari_adaqat.widgets.train import TrainWidget

    widget = TrainWidget(make_napari_viewer())
    assert widget.status.value == "Choose a data folder and a run folder, then Start."
    widget.data.value = str(tmp_path)
    assert widget.status.value == "Choose a run folder, then Start."
    widget.out.value = str(tmp_path / "run")
    assert widget.status.value == "Ready: press Start."
    widget.out.line_edit.value = ""
    assert widget.status.value == "Choose a run folder, then Start."
    widget._refuse("No usable image/mask pairs in x: y")  # a refusal stays until the next Start
    widget.out.value = str(tmp_path / "run2")
    assert widget.status.value.startswith("No usable image/mask pairs")


def test_a_refusal_goes_once_another_data_folder_passes_its_check(make_napari_viewer, qtbot, dataset, tmp_path):
    """A QA walk's find: after Start refused a mistyped data folder, choosing a good one (its check: 0 bad pairs)
    still showed '…train1O: data folder not found'.  And a split without validation films was said as 'No usable
    image/mask pairs … (2 usable training images)', which contradicts itself."""
    from napari_adaqat.widgets.train import TrainWidget

    widget = TrainWidget(make_napari_viewer())
    widget.data.value, widget.out.value = str(tmp_path / "train1O"), str(tmp_path / "run")
    (tmp_path / "train10").mkdir()  # the folder meant
    assert not widget.start() and widget.status.value == (
        f"{tmp_path / 'train1O'}: data folder not found; did you mean {str(tmp_path / 'train10')!r}?")
    widget.data.value = str(dataset)
    qtbot.waitUntil(lambda: widget.data_report is not None and not widget.checking, timeout=30_000)
    assert widget.status.value == "The data check passes now: Start when ready."

    two = tmp_path / "two"
    for kind in ("images", "masks"):
        (two / kind).mkdir(parents=True)
        for film in sorted((dataset / kind).glob("*.png"))[:2]:
            (two / kind / film.name).write_bytes(film.read_bytes())
    widget.data.value = str(two)
    qtbot.waitUntil(lambda: widget.data_report is not None and str(widget.data_report.folder) == str(two)
                    and not widget.checking, timeout=30_000)
    assert not widget.data_report.usable  # (2 films: no validation film is left)
    assert not widget.start() and widget.status.value.startswith(f"{two}: the validation set is empty (2 usable")


def test_the_line_over_the_plot_drops_the_eta_when_the_run_ends(make_napari_viewer):
    """Before: a finished run kept 'ETA 0 s' (or the last ETA) over its plot."""
    from napari_adaqat.widgets.train import TrainWidget

    class Ended:  # a training process that has just exited with an error
        label, stopping = "Stage 1", False

        def returncode(self) -> int:
            return 1

        def last_error_line(self) -> str:
            return "out of memory"

        def close(self) -> None:
            pass

    widget = TrainWidget(make_napari_viewer())
    clock = TimeLeft()
    widget.process = Ended()
    widget._take([clock.take(r) for r in REAL_STAGE1[:7]])
    assert " · ETA " in widget.plot_info.value and not widget.plot_info.value.endswith("ETA –")  # (counts down)
    widget._finish(widget.process)
    assert widget.plot_info.value.endswith("ETA –") and "Failed" in widget.status.value


def test_a_refusal_about_the_run_folder_stays_when_the_data_changes(make_napari_viewer, qtbot, tmp_path, dataset):
    """(A review's find on the fix above: the data check replaced any refusal, this one too.)"""
    import shutil

    from napari_adaqat.train.paths import run_paths
    from napari_adaqat.widgets.train import TrainWidget

    widget = TrainWidget(make_napari_viewer())
    out = tmp_path / "run"
    run_paths(out)["last"].parent.mkdir(parents=True)
    run_paths(out)["last"].write_bytes(b"x")  # a run is there; Resume is off
    widget.data.value, widget.out.value = str(dataset), str(out)
    qtbot.waitUntil(lambda: widget.data_report is not None and not widget.checking, timeout=30_000)
    assert not widget.start()
    refusal = widget.status.value
    shutil.copytree(dataset, tmp_path / "copy")
    widget.data.value = str(tmp_path / "copy")
    qtbot.waitUntil(lambda: str(widget.data_report.folder) == str(tmp_path / "copy") and not widget.checking,
                    timeout=30_000)
    assert widget.status.value == refusal


def test_the_model_of_the_dock_s_own_run_stays_handed_over(qtbot, tmp_path, dataset):
    """(A review's find: after a field edit, typing the next run folder dropped the pair this dock's run made.)"""
    from napari_adaqat.train.chain import chain_paths
    from napari_adaqat.widgets.train import TrainWidget

    paths = chain_paths(tmp_path / "A")
    paths["root"].mkdir()
    paths["int8"].write_bytes(b"x")
    paths["fp32"].write_bytes(b"x")
    widget = TrainWidget(None)
    widget.data.value, widget.out.value = str(dataset), str(paths["root"])
    widget.exported, widget._found = (paths["int8"], paths["fp32"]), False  # as a chain run of this dock leaves it
    widget.epochs.value = widget.epochs.value + 1  # any edit
    widget.out.value = str(tmp_path / "B")  # the next run's folder
    assert widget.exported == (paths["int8"], paths["fp32"]) and widget.use_button.enabled
