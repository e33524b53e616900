"""Paths of the real instrument files used by the TIFF/EMD/TIA reader tests (skip when absent).

The files live beside the repository in ``../shared/real_data/rosettasciio`` (see its README) and
are never copied into the project; a fresh clone without them skips these tests cleanly.
"""
from __future__ import annotations

from pathlib import Path

import pytest

REAL_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "real_data" / "rosettasciio"

DM_TIFF = "tiff_test_loading_image_saved_with_DM_stack.tif"
VELOX_STACK = "emd_fei_example_tem_stack.emd"
VELOX_IMAGE = "emd_example_image.emd"
TIA_EMI = "tia/64x64x5_TEM_preview.emi"
TIA_SER = "tia/64x64x5_TEM_preview_1.ser"


def real_path(name: str) -> Path:
    """``REAL_DATA / name``, or ``pytest.skip`` when the file is not there."""
    p = (REAL_DATA / name).resolve()
    if not p.is_file():
        pytest.skip(f"real instrument file not available: {p}")
    return p
