"""Shared test set-up.

- ``tests/`` is on ``sys.path`` so that test-only helpers import as ``helpers.<module>``
  (``helpers/data_files.py``: writers of small files in every on-disk format;
  ``helpers/omniglot_zips.py``: tiny Omniglot zips in the official layout). Test modules never
  import each other.
- The ``slow`` mark (registered in pyproject.toml) flags tests that train networks or run whole
  commands; ``pytest -m "not slow"`` is the quick loop, the full suite is what CI runs.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
