"""A license-clean install (issue 30): `pip install napari-adaqat` pulls in no GPL package, a DICOM that needs
the GPL decoder names the `dicom-gpl` extra, and every declared extra resolves to installed versions."""
from __future__ import annotations

import importlib.metadata as md
import importlib.util
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]

def _closure(requirements: list[str], extra: str = "") -> dict[str, md.Distribution]:
    """The installed distributions that ``requirements`` pull in (markers evaluated without extras)."""
    seen: dict[str, md.Distribution] = {}
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        if req.marker and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        if name in seen or name == "napari-adaqat":
            continue
        dist = md.distribution(req.name)  # PackageNotFoundError: a declared dependency is not installed
        assert req.specifier.contains(dist.version, prereleases=True), (req, dist.version)
        seen[name] = dist
        todo += [Requirement(r) for r in dist.requires or []]
    return seen


def _licenses(dist: md.Distribution) -> str:
    meta = dist.metadata
    parts = [meta.get("License-Expression") or "", (meta.get("License") or "")[:300]]
    parts += [c for c in meta.get_all("Classifier") or [] if c.startswith("License")]
    return " | ".join(p for p in parts if p)


def _is_gpl(text: str) -> bool:
    return bool(re.search(r"(?<!L)GPL|(?<!Lesser )General Public License", text)) and "LGPL" not in text


def test_pip_install_installs_no_gpl_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    default = _closure(project["dependencies"])
    assert len(default) > 20 and "torch" in default
    gpl = {name: _licenses(d) for name, d in default.items() if _is_gpl(_licenses(d))}
    assert not gpl, gpl
    assert "pylibjpeg-libjpeg" not in default and project["requires-python"].startswith(">=3.11")
    assert _is_gpl("GNU General Public License v3 (GPLv3)") and not _is_gpl("MIT | BSD License")
    if importlib.util.find_spec("libjpeg") is not None:  # the dicom-gpl extra is installed here
        extra = _closure(project["optional-dependencies"]["dicom-gpl"])
        assert _is_gpl(_licenses(extra["pylibjpeg-libjpeg"]))  # the test sees a GPL package when there is one


WITHOUT_GPL = """
import importlib.metadata as md, sys
sys.modules["libjpeg"] = None  # as after a plain `pip install napari-adaqat`: no pylibjpeg-libjpeg
_eps = md.entry_points
md.entry_points = lambda **kw: (md.EntryPoints([e for e in _eps(**kw) if not e.value.startswith("libjpeg")])
                                if kw else _eps())
import pydicom
from pathlib import Path
from napari_adaqat.io import ImageReadError, read_image
corpus = Path(pydicom.__file__).parent / "data" / "test_files"
signed = pydicom.dcmread(corpus / "JPGExtended.dcm")
signed.PixelRepresentation = 1  # signed 12-bit JPEG Extended: python-gdcm is not given it
signed.save_as(sys.argv[1])
for path in (corpus / "JPGExtended.dcm", corpus / "SC_rgb_jpeg_gdcm.dcm", corpus / "SC_rgb_jpeg.dcm", Path(sys.argv[1])):
    try:
        print(path.name, "decoded", read_image(path).pixels.shape)
    except ImageReadError as exc:
        print(path.name, "refused", str(exc).split(": ", 1)[1])
"""


def test_without_the_gpl_extra_a_file_that_needs_it_names_the_extra(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", WITHOUT_GPL, str(tmp_path / "signed.dcm")], capture_output=True,
                            text=True, timeout=120)
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert result.returncode == 0, result.stderr[-2000:]
    assert lines["SC_rgb_jpeg.dcm"].startswith("decoded")  # JPEG Baseline: Pillow, permissive
    assert lines["SC_rgb_jpeg_gdcm.dcm"].startswith("decoded")  # JPEG Lossless: python-gdcm, permissive
    assert lines["JPGExtended.dcm"] == "decoded (1024, 256)"  # 12-bit JPEG Extended: python-gdcm (io/dicom_jpeg12.py)
    assert lines["signed.dcm"].startswith("refused cannot decode JPEG") and lines["signed.dcm"].endswith(
        "`pip install 'napari-adaqat[dicom-gpl]'` adds the GPL-licensed decoder that may read it"), lines


@pytest.mark.parametrize("extra", ["napari", "dev", "dicom-gpl"])
def test_the_declared_extras_resolve(extra):
    """Every requirement of every extra is installed here at a version it allows (self-references expand);
    ``dicom-gpl`` only where it was installed (`.ci/run` installs ``dev``, which leaves the GPL decoder out)."""
    if extra == "dicom-gpl" and importlib.util.find_spec("libjpeg") is None:
        pytest.skip("the dicom-gpl extra is not installed here (a plain `pip install -e .[dev]`)")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    todo, names = list(extras[extra]), []
    while todo:
        req = Requirement(todo.pop())
        if canonicalize_name(req.name) == "napari-adaqat":
            todo += [r for e in req.extras for r in extras[e]]
            continue
        names.append(str(req))
    assert names and _closure(names)


