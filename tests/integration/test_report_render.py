"""The HTML report rendered by a real browser (headless Chromium, from the `chromium` system package), offline."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np

from harness.report.build import build as build_report
from tests.unit.built_runs import conformance_result, sweep_run, write_dir

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def test_the_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    browser = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    assert browser is not None, "headless Chromium is needed: install the `chromium` system package (apt)"
    page = build_report([write_dir(tmp_path / "run", sweep_run(), conformance_result(failed=1))], limit=30).html
    shot = tmp_path / "report.png"
    argv = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--hide-scrollbars", "--window-size=1400,4000", f"--screenshot={shot}", page.as_uri()]  # fmt: skip
    subprocess.run(argv, capture_output=True, timeout=120, check=True)
    pixels = np.asarray(matplotlib.image.imread(shot))[..., :3]
    assert pixels.shape[:2] == (4000, 1400)
    # The dark header band is drawn, and the page below it holds text and figures (not a blank or error page).
    assert pixels[:60].mean() < 0.3
    body = (pixels[200:] * 255).astype(np.uint8)
    assert (body.mean(axis=2) < 128).mean() > 0.01  # dark pixels: text, axes, lines
    assert len(np.unique(body[::5, ::5].reshape(-1, 3), axis=0)) > 200  # colours: badges, plot lines, antialiasing
