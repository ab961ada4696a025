"""Suite-wide set-up: the project's folders on sys.path as Airflow puts them, and a private var dir."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for folder in (ROOT, ROOT / "plugins"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

# Unit tests never touch the developer's var/ (their own app DB, storage and Airflow home).
_VAR = Path(tempfile.mkdtemp(prefix="bitbuddies-tests-"))
os.environ.setdefault("BITBUDDIES_VAR_DIR", str(_VAR))
os.environ.setdefault("AIRFLOW_HOME", str(_VAR / "airflow"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
