"""Shared fixtures: the real-instrument folder and small synthetic movies."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO.parent / "shared" / "real_data" / "rosettasciio"


@pytest.fixture
def real_file():
    """Path of a file in ../shared/real_data/rosettasciio; skips cleanly when absent."""
    def get(name: str) -> Path:
        p = REAL_DATA / name
        if not p.exists():
            pytest.skip(f"real instrument file not available: {p}")
        return p
    return get
