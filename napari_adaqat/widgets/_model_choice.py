"""The model and baseline choices shared by the Segment and Batch docks: bundled default, a file, or none; and the
model file a dataset folder was last annotated with (``DATASET/annotate_model.json``: a restarted Annotate dock
pre-segments with the fine-tuned model again)."""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from magicgui.widgets import ComboBox, FileEdit

from napari_adaqat.inference.engine import ModelRef
from napari_adaqat.util.atomic import atomic_write_text
from napari_adaqat.model.build import PRESETS

MODEL_FILTER = "Model files (*.safetensors *.pth *.pt)"
DEFAULT, FILE, NONE = "default", "file", "none"
MODEL_NOTE = "annotate_model.json"  # in a dataset folder: the model file the Annotate dock last used there


class ModelChoice:
    """Five widgets: ``model``, ``model_file``, ``baseline``, ``baseline_file`` and ``model_type``
    (the architecture of official SAM ``.pth`` files); :meth:`refs` turns them into engine refs."""

    def __init__(self, *, model_path: str | Path | None = None, baseline_path: str | Path | None = None,
                 use_baseline: bool = True, model_type: str = "vit_b") -> None:
        self.model = ComboBox(label="model", value=FILE if model_path else DEFAULT,
                              choices=[("bundled INT8 default", DEFAULT), ("model file…", FILE)])
        self.model_file = FileEdit(label="model file", mode="r", filter=MODEL_FILTER, value=str(model_path or ""))
        self.baseline = ComboBox(label="baseline", choices=[("bundled FP32 default", DEFAULT),
                                                            ("model file…", FILE), ("none", NONE)],
                                 value=NONE if not use_baseline else (FILE if baseline_path else DEFAULT))
        self.baseline_file = FileEdit(label="baseline file", mode="r", filter=MODEL_FILTER,
                                      value=str(baseline_path or ""))
        self.model_type = ComboBox(label=".pth architecture", choices=list(PRESETS), value=model_type,
                                   tooltip="architecture of official SAM .pth checkpoints")
        self.baseline.tooltip = "the FP32 model the SSIM maps compare against (none: no maps)"

    @property
    def widgets(self) -> list:
        return [self.model, self.model_file, self.baseline, self.baseline_file, self.model_type]

    def update_visibility(self) -> None:
        """Show a file field only when "model file…" is chosen, and the architecture only then, for a ``.pth``
        (or a file not chosen yet): our ``.safetensors`` files carry their own."""
        self.model_file.visible = self.model.value == FILE
        self.baseline_file.visible = self.baseline.value == FILE
        chosen = [field.value for choice, field in ((self.model, self.model_file), (self.baseline, self.baseline_file))
                  if choice.value == FILE]
        self.model_type.visible = any(not str(path).strip() or str(path) == "." or Path(str(path)).suffix.lower()
                                      != ".safetensors" for path in chosen)

    def set_files(self, model: str | Path, baseline: str | Path | None) -> None:
        """Choose model files (e.g. a freshly exported pair); baseline None = no baseline."""
        self.model_file.value = str(model)
        if baseline is not None:
            self.baseline_file.value = str(baseline)
        self.model.value = FILE
        self.baseline.value = FILE if baseline is not None else NONE

    def choose_quietly(self, model: str | Path | None, baseline: str | Path | None) -> None:
        """:meth:`set_files` (``model`` None: the bundled default) without emitting ``changed`` on the way,
        so that the dock reacts once, to the final choice."""
        with self._quiet():
            if model is None:
                self.model.value = DEFAULT
            else:
                self.set_files(model, baseline)

    def choose_refs(self, model: ModelRef, baseline: Optional[ModelRef]) -> None:
        """Choose ``model`` and ``baseline`` (None: no baseline) as refs, as :meth:`choose_quietly` does (a ref
        whose path is None is the bundled file; a file model's architecture comes with it)."""
        with self._quiet():
            if model.path is not None:
                self.model_file.value, self.model_type.value = str(model.path), model.model_type
            self.model.value = DEFAULT if model.path is None else FILE
            if baseline is not None and baseline.path is not None:
                self.baseline_file.value = str(baseline.path)
            self.baseline.value = NONE if baseline is None else DEFAULT if baseline.path is None else FILE

    @contextmanager
    def _quiet(self) -> Iterator[None]:
        """No ``changed`` from the widgets meanwhile: the dock reacts once, to the final choice."""
        for w in self.widgets:
            w.changed.block()
        try:
            yield
        finally:
            for w in self.widgets:
                w.changed.unblock()

    def model_ref(self) -> ModelRef:
        """The chosen model (raises ValueError when a file is asked for but not given)."""
        return self._ref(self.model.value, self.model_file.value, baseline=False)

    def baseline_ref(self) -> Optional[ModelRef]:
        """The chosen baseline, or None."""
        if self.baseline.value == NONE:
            return None
        return self._ref(self.baseline.value, self.baseline_file.value, baseline=True)

    def _ref(self, choice: str, file: Any, baseline: bool) -> ModelRef:
        if choice == DEFAULT:
            return ModelRef(None, baseline=baseline)
        path, what = Path(str(file or "")), "baseline" if baseline else "model"
        choose = f"choose a {what} file (.safetensors or SAM .pth)"
        if not str(file or "").strip() or path in (Path("."), Path.cwd()):  # (magicgui's empty field: the cwd)
            raise ValueError(f"{choose} in '{what} file'")
        if path.is_dir():
            raise ValueError(f"{path} is a folder: {choose} in it")
        if not path.is_file():
            raise ValueError(f"{path} does not exist: {choose}")
        return ModelRef(path, baseline=baseline, model_type=self.model_type.value)


def note_model(dataset: str | Path, choice: ModelChoice) -> None:
    """Write down in ``dataset`` the model file ``choice`` holds (none when the bundled default); never raises."""
    model = str(choice.model_file.value) if choice.model.value == FILE else None
    baseline = str(choice.baseline_file.value) if model and choice.baseline.value == FILE else None
    try:
        atomic_write_text(Path(dataset) / MODEL_NOTE, json.dumps({"model": model, "baseline": baseline}) + "\n")
    except OSError:
        pass  # a read-only dataset: the choice is just not remembered


def noted_model(dataset: str | Path) -> Optional[tuple[Path, Optional[Path]]]:
    """(model, baseline or None) noted in ``dataset`` by :func:`note_model`, when the model file is still there."""
    try:
        note = json.loads((Path(dataset) / MODEL_NOTE).read_text(encoding="utf-8"))
        model, baseline = note.get("model"), note.get("baseline")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(model, str) or not Path(model).is_file():
        return None
    return Path(model), Path(baseline) if isinstance(baseline, str) and Path(baseline).is_file() else None
