"""Every package folder is listed in pyproject (gui/ is installed as temtrack_gui)."""
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_subpackage_is_installed():
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "temtrack").rglob("__init__.py")}
    found |= {"temtrack_gui" + "".join("." + part for part in p.parent.relative_to(REPO / "gui").parts)
              for p in (REPO / "gui").rglob("__init__.py")}
    assert found - listed == set(), f"add these to [tool.setuptools] packages: {sorted(found - listed)}"


def test_gui_import_name_is_temtrack_gui():
    import importlib.util
    spec = importlib.util.find_spec("temtrack_gui")
    assert spec is not None and Path(spec.origin).parent.name == "gui"
