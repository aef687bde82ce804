#!/usr/bin/env bash
# A fresh virtual environment gets the plugin the way a user installs it, and napari runs it on Qt 6:
#   python -m venv → pip install -e ".[napari]" → (QT_API unset, under xvfb-run) qtpy picks PyQt6, napari's
#   Qt main window imports without the PyQt5 deprecation warning, npe2 discovers napari-adaqat, and a viewer
#   opens every dock the manifest lists.
# Usage: bash benchmarks/fresh_venv_napari.sh [VENV_DIR]      (a few minutes: torch installs from the wheel cache)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${1:-$(mktemp -d)/venv}
PY=${PYTHON:-python3}

echo "== venv: $VENV ($($PY --version))"
$PY -m venv "$VENV"
"$VENV/bin/python" -m pip install -q -e "$ROOT[napari]" 2>&1 | grep -v "^WARNING: Location" || true
echo "== Qt bindings installed:"
"$VENV/bin/python" -m pip list 2>/dev/null | grep -i -E '^(pyqt|pyside)' || true

cd "$(mktemp -d)"  # away from the repository: the installed package is what runs
unset QT_API
xvfb-run -a "$VENV/bin/python" - <<'EOF'
import os

assert "QT_API" not in os.environ  # qtpy chooses the binding itself (and then sets QT_API)
import qtpy
from napari._qt import qt_main_window  # napari's Qt application and main window

import napari
import npe2

print("qtpy binding:", qtpy.API_NAME, "Qt", qtpy.QT_VERSION, "| napari", napari.__version__)
assert qtpy.API_NAME == "PyQt6", qtpy.API_NAME
assert qt_main_window.SHOW_QT_WARNING is False, "napari would show the PyQt5 deprecation warning"

pm = npe2.PluginManager.instance()
pm.discover()
manifest = pm.get_manifest("napari-adaqat")
docks = [w.display_name for w in manifest.contributions.widgets]
print("plugin found:", manifest.name, manifest.package_metadata.version if manifest.package_metadata else "", docks)

viewer = napari.Viewer(show=False)
for name in docks:
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-adaqat", name)
    print(f"dock opened: {name} -> {type(widget).__name__}")
viewer.close()
print("OK: napari on Qt 6 found and opened the napari-adaqat docks")
EOF
