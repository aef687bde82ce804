import sys

from napari_adaqat.cli import main

sys.exit(main())
