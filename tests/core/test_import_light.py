import subprocess
import sys


def test_import_temtrack_loads_no_qt_hyperspy_or_pyplot():
    code = ("import sys, temtrack, temtrack.io, temtrack.pipeline.executor, temtrack.cli; "
            "print(' '.join(m for m in ('PySide6', 'hyperspy', 'matplotlib.pyplot', 'pyqtgraph') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
