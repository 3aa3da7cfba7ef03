"""Let unit tests import the shared fakes (``from fakes import FakeKubeClient``)."""

from __future__ import annotations

import sys
from pathlib import Path

UNIT_DIR = str(Path(__file__).resolve().parent)
if UNIT_DIR not in sys.path:
    sys.path.insert(0, UNIT_DIR)
