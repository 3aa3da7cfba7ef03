"""`python -m knlab_sandbox …` is `knlab-sandbox …`."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
