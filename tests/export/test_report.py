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


def _chromium():
    import shutil
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run_chromium(browser, tmp_path, *args):
    """Headless Chromium as root on a closed network: no sandbox, no background connections, a fresh profile."""
    import subprocess
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)


def test_report_in_headless_browser(tmp_path):
    """The report opened by a real browser: the numbers are in the rendered DOM and the embedded PNG and
    the inline SVG figures are drawn (their colours appear in a screenshot)."""
    import numpy as np
    from matplotlib.figure import Figure
    from PIL import Image

    from temtrack.io.results import save_figure_atomic
    browser = _chromium()
    if browser is None:
        pytest.skip("no headless Chromium on this machine (Debian: apt-get install chromium)")
    folder = _results_folder(tmp_path)
    # One PNG figure filled with pure red, one SVG-only figure (inlined) filled with pure blue.
    for name, color, suffix in (("red", "#ff0000", ".png"), ("blue", "#0000ff", ".svg")):
        fig = Figure(figsize=(3, 2))
        fig.patch.set_facecolor(color)
        save_figure_atomic(fig, folder / f"{name}{suffix}", dpi=60)
    out = write_report(folder)
    dom = _run_chromium(browser, tmp_path, "--dump-dom", out.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    p = _Collect()
    p.feed(dom.stdout)
    text = " ".join(p.text)
    for number in ("812.5", "790", "830", "40.1", "64.3"):
        assert number in text, number
    assert len(p.imgs) >= 2 and "svg" in p.tags
    shot = tmp_path / "page.png"
    run = _run_chromium(browser, tmp_path, "--window-size=1200,3000", f"--screenshot={shot}", out.as_uri())
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    rgb = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    red = int(((r > 200) & (g < 60) & (b < 60)).sum())
    blue = int(((b > 200) & (r < 60) & (g < 60)).sum())
    print(f"screenshot {rgb.shape[1]}x{rgb.shape[0]} px: {red} red px (PNG figure), {blue} blue px (inline SVG)")
    # A 3x2 in figure shown at least ~100 px wide covers thousands of pixels.
    assert red > 5000 and blue > 5000


def test_report_of_non_results_folder(tmp_path):
    with pytest.raises(ParameterError, match="not a results folder"):
        write_report(tmp_path)
    (tmp_path / "results.json").write_text("{oops")
    with pytest.raises(ParameterError, match="not valid JSON"):
        write_report(tmp_path)
