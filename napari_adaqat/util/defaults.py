"""Numbers that the engine uses and the CLI's help shows, in a module that imports nothing: ``adaqat ...
--help`` prints them without importing numpy, scipy or torch.  Their users import them from here (one home
each); the modules named below re-export them."""
from __future__ import annotations

# the default box prompt (data/boxes.py default_box): the whole image minus this fraction of each side
DEFAULT_BOX_MARGIN_FRACTION = 0.02

# the box clipping of masks (data/boxes.py clip_margin; training clips the same way)
CLIP_MARGIN_FRACTION = 0.02  # the box-clipping margin, as a fraction of the longer image side ...
CLIP_MARGIN_MIN_PX = 8.0  # ... and at least this many pixels

# the paired equivalence test (TOST) of adaqat evaluate (metrics/stats.py tost_paired)
EQUIVALENCE_MARGIN = 0.005  # Dice: ±0.5 Dice points (Dice × 100)
