"""The Segment dock's model, baseline and device as chosen (a mixin of
:class:`~napari_adaqat.widgets.segment.SegmentWidget`): the refs the engine gets, built once per change of a
choice, and what a change does (forget cached files, embed the image again)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from napari_adaqat.inference.engine import ModelRef
from napari_adaqat.model.device import resolve_device


class ModelSpecs:
    """Needs the dock's ``models`` (:class:`~napari_adaqat.widgets._model_choice.ModelChoice`), ``device``,
    ``engine``, ``image``, ``_choice`` and ``start_embedding``."""

    models: Any
    device: Any
    engine: Any
    image: Any
    _choice: Optional[tuple[ModelRef, Optional[ModelRef], str]]

    def model_ref(self) -> ModelRef:
        """The chosen model (raises ValueError when a file is asked for but not given)."""
        return self.models.model_ref()

    def baseline_ref(self) -> Optional[ModelRef]:
        """The chosen baseline, or None."""
        return self.models.baseline_ref()

    def use_models(self, model: str | Path, baseline: str | Path | None) -> None:
        """Segment with these model files from now on (e.g. the pair the Train dock just exported)."""
        self.models.choose_quietly(model, baseline)
        self._on_model_changed()

    def use_refs(self, model: ModelRef, baseline: Optional[ModelRef], quiet: bool = False) -> None:
        """Segment with ``model`` and ``baseline`` (refs, e.g. the Annotate dock's); ``quiet``: do not embed the
        current image now (the caller chooses another image next)."""
        self.models.choose_refs(model, baseline)
        self._on_model_changed(embed=not quiet)

    def _device(self) -> str:
        return resolve_device(self.device.value)

    def _chosen(self) -> tuple[ModelRef, Optional[ModelRef], str]:
        """(model, baseline, device) as chosen: built when a choice changes, not at every prompt (raises
        ValueError while a choice is incomplete).  Whether a file was rewritten, the engine checks at
        most once a second (``shared_engine``) and at once after a choice changed."""
        if self._choice is None:
            self._choice = (self.model_ref(), self.baseline_ref(), self._device())
        return self._choice

    def _on_model_changed(self, _value: Any = None, embed: bool = True) -> None:
        self._choice = None
        self.engine.forget_files()
        self.models.update_visibility()
        if embed and self.image.value is not None:
            self.start_embedding()
