"""Where the real instrument files are (``../shared/real_data/rosettasciio``) and a skip helper.

Used by the DM / GMS / frms6 / detection tests; the files are never copied into the project, and a
fresh clone without them skips those tests cleanly.
"""
from __future__ import annotations

from pathlib import Path

import pytest

REAL_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "real_data" / "rosettasciio"


def real_file(name: str) -> Path:
    """``REAL_DATA / name``, or ``pytest.skip`` when it is not there."""
    p = (REAL_DATA / name).resolve()
    if not p.exists():
        pytest.skip(f"real instrument file not available: {p}")
    return p
