import json
from html.parser import HTMLParser

import pytest

from temtrack.errors import ParameterError
from temtrack.export.report import write_report


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.imgs, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(dict(attrs))

    def handle_data(self, data):
        self.text.append(data)


def _results_folder(tmp_path):
    from matplotlib.figure import Figure

    from temtrack.io.results import save_figure_atomic, write_json_atomic
    folder = tmp_path / "res"
    folder.mkdir()
    write_json_atomic(folder / "results.json", {
        "kinetics": {"model": "parabolic", "D_nm2_per_s": 812.5, "D_cm2_per_s": 8.125e-12, "k_nm_per_s": None,
                     "n": 0.5, "t0_s": 3.2, "prefactor": 2, "ci95": {"D_nm2_per_s": [790.0, 830.0]},
                     "comparison": {"parabolic": {"aicc": 10.0, "bic": 12.0, "rss": 3.0, "params": {"D": 812.5}}}},
        "diameter": {"pristine_nm": 40.1, "sodiated_nm": 64.3},
        "warnings": ["front left the field of view after 120 s"],
        "provenance": {"temtrack_version": "0.1.0", "file": "/data/wire.dm4", "recipe": {"width_px": 30}}})
    fig = Figure()
    fig.add_subplot().plot([0, 1], [0, 1])
    save_figure_atomic(fig, folder / "front_vs_time.png")
    return folder


def test_report_is_self_contained(tmp_path):
    folder = _results_folder(tmp_path)
    out = write_report(folder)
    html = out.read_text()
    p = _Collect()
    p.feed(html)
    text = " ".join(p.text)
    assert "812.5" in text and "790" in text and "830" in text and "wire.dm4" in text
    assert "front left the field of view" in text
    assert p.imgs and all(i["src"].startswith("data:image/png;base64,") for i in p.imgs)
    assert "http" not in html.replace("http://www.w3.org", "")  # nothing fetched from outside
    assert (folder / "front_vs_time.svg").exists()  # vector twin written beside the PNG
    svg = (folder / "front_vs_time.svg").read_text()
    import xml.etree.ElementTree as ET
    assert ET.fromstring(svg).tag.endswith("svg")


def test_report_in_headless_browser(tmp_path):
    import shutil
    import subprocess
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no headless Chromium on this machine")
    folder = _results_folder(tmp_path)
    out = write_report(folder)
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=120)
    assert "812.5" in dom.stdout


def test_report_of_non_results_folder(tmp_path):
    with pytest.raises(ParameterError, match="not a results folder"):
        write_report(tmp_path)
    (tmp_path / "results.json").write_text("{oops")
    with pytest.raises(ParameterError, match="not valid JSON"):
        write_report(tmp_path)
