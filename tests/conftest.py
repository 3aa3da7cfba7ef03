"""Make this checkout importable as ``ansible_collections.knlab.serverless``.

``make setup`` links the repository into ``.build/collections``; putting that on ``sys.path`` lets
the unit tests import the modules and module_utils exactly as Ansible does.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLLECTIONS = ROOT / ".build" / "collections"
if not (COLLECTIONS / "ansible_collections" / "knlab" / "serverless").exists():
    raise RuntimeError(f"{COLLECTIONS} has no knlab.serverless link: run `make setup` first")
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))
