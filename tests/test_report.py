"""report.html: what it shows from a run folder, and that a real browser renders it offline without errors."""

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import gankit
from gankit.cli import main
from gankit.data import save_npz
from gankit.report.html import write_report

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WARNING_LINE = {"step": 8, "epoch": 2, "warning": "mode-collapse", "message": "only 2 of 10 classes <covered> & D wins", "coverage": 0.2}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A real 8-step DCGAN run (2 epochs of 4 batches, a log line per step), plus an evaluation
    and a warning line such as eval.every_epochs and the watchdog write."""
    root = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(0)
    save_npz(root / "tiny.npz", rng.integers(0, 256, (64, 1, 28, 28), dtype=np.uint8))
    result = gankit.train(
        "configs/dcgan-fashion.yaml",
        out_dir=root / "run",
        overrides=[f"data.dataset=npz:{root / 'tiny.npz'}", "train.batch_size=16", "model.width=8", "train.log_every=1", "train.sample_grid=16"],
        max_steps=8,
        device="cpu",
        progress=False,
    )
    assert (result.run_dir / "report.html").is_file()  # written by training itself
    with open(result.run_dir / "metrics.jsonl", "a") as log:
        for step, fid in ((4, 250.5), (8, 180.25)):
            log.write(json.dumps({"step": step, "epoch": step // 4, "eval": {"fid": fid, "precision": step / 40, "collapse_suspected": False}, "seconds": 1.5}) + "\n")
        log.write(json.dumps(WARNING_LINE) + "\n")
    return result.run_dir


def make_folder(root: Path, records: list[dict], config: str = "name: crafted\ntrain: {batch_size: 10, epochs: 3}\nstabilizers: {n_critic: 1}\n") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(config)
    (root / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def log_record(step: int, images_per_s: float = 100.0, seconds: float = 1.0) -> dict:
    return {"kind": "train", "version": 1, "step": step, "epoch": 0, "d_loss": 1.0 + step, "g_loss": 0.5, "d_real": 0.6, "d_fake": 0.4,
            "g_grad_norm": 1.0, "d_grad_norm": 2.0, "images_per_s": images_per_s, "seconds": seconds}


def test_report_holds_every_part_of_the_run(tiny_run, tmp_path):
    html = write_report(tiny_run, tmp_path / "r.html").read_text()
    grids = sorted(p.name for p in (tiny_run / "samples").iterdir())
    assert grids == ["epoch-001.png", "epoch-002.png", "final.png"]
    # each grid embedded once in the strip, plus the slider's current picture
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) == len(grids)
    assert 'id="grid-image" src="data:image/png;base64,' in html
    assert f'max="{len(grids) - 1}"' in html
    for series in ("d_loss", "g_loss", "d_real", "d_fake", "fid", "precision"):
        assert f'data-series="{series}"' in html
    assert "Latest evaluation (step 8)" in html and "180.25" in html
    assert "only 2 of 10 classes &lt;covered&gt; &amp; D wins" in html and "coverage=0.2" in html
    assert "Warnings (1)" in html
    assert "name: dcgan-fashion" in html  # the config, as YAML
    # self-contained: nothing is fetched from anywhere
    assert not re.search(r'(src|href)="(?!data:)', html)


def test_curves_are_svg_lines_through_every_logged_point(tmp_path):
    folder = make_folder(tmp_path / "run", [log_record(step) for step in range(10, 60, 10)])
    html = write_report(folder).read_text()
    losses = re.search(r'<polyline points="([^"]+)" data-series="d_loss"', html).group(1).split()
    assert len(losses) == 5
    ys = [float(point.split(",")[1]) for point in losses]
    assert ys == sorted(ys, reverse=True)  # d_loss rises with the step, and SVG's y axis points down
    constant = re.search(r'<polyline points="([^"]+)" data-series="g_loss"', html).group(1).split()
    assert len({point.split(",")[1] for point in constant}) == 1


def test_ada_runs_get_a_curve_of_p_and_r_t(tmp_path):
    plain = write_report(make_folder(tmp_path / "plain", [log_record(step) for step in (10, 20)])).read_text()
    adaptive = write_report(make_folder(tmp_path / "ada", [log_record(step) | {"augment_p": step / 100, "ada_rt": 0.7} for step in (10, 20)])).read_text()
    assert "ADA" not in plain
    assert 'aria-label="Adaptive augmentation (ADA)"' in adaptive
    assert 'data-series="augment_p"' in adaptive and 'data-series="ada_rt"' in adaptive


def test_long_runs_are_thinned_to_a_bounded_curve(tmp_path):
    folder = make_folder(tmp_path / "run", [log_record(step) for step in range(1, 5001)])
    html = write_report(folder).read_text()
    points = re.search(r'<polyline points="([^"]+)" data-series="d_loss"', html).group(1).split()
    assert 500 <= len(points) <= 1001
    assert points[-1].split(",")[0] == "512.0"  # the last step is kept: the curve reaches the right edge


def test_timing_sums_the_logged_windows(tmp_path):
    records = [log_record(10, 100.0, seconds=1.0), log_record(20, 50.0, seconds=2.0), {"kind": "eval", "version": 1, "step": 20, "epoch": 1, "eval": {"fid": 3.0}, "seconds": 65}]
    folder = make_folder(tmp_path / "run", records)
    html = write_report(folder).read_text()
    assert "<td>images/s (median of log windows)</td><td>75</td>" in html
    assert "<td>training time (sum of log windows)</td><td>3.0 s</td>" in html
    assert "<td>evaluation time during training</td><td>1 min 05 s</td>" in html


def test_latest_evaluation_prefers_the_newer_source(tmp_path):
    folder = make_folder(tmp_path / "run", [log_record(10), {"step": 10, "epoch": 1, "eval": {"fid": 9.5}, "seconds": 2}])
    offline = {"metrics": {"fid": 7.25}, "feature_extractor": "gankit evaluator 'fashion-mnist'", "num_real": 10000, "num_generated": 5000, "step": 10}
    (folder / "eval.json").write_text(json.dumps(offline))
    html = write_report(folder).read_text()
    table = html[html.index("Latest evaluation"):]
    assert "7.25" in table and "gankit evaluator &#x27;fashion-mnist&#x27;" in table and "num_generated" in table and "9.5" not in table
    (folder / "eval.json").write_text(json.dumps(offline | {"step": 5}))
    table = write_report(folder).read_text().split("Latest evaluation")[1]
    assert "9.5" in table and "metrics.jsonl (during training)" in table and "7.25" not in table


def test_an_empty_run_still_renders(tmp_path):
    html = write_report(make_folder(tmp_path / "run", [])).read_text()
    assert "No sample grids yet" in html and "No training log yet" in html and "No evaluation yet" in html


def test_cli_report(tiny_run, tmp_path, capsys):
    out = tmp_path / "copy.html"
    assert main(["report", str(tiny_run), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"report: {out}"
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gankit: error: ") and "not a run folder" in err and err.count("\n") == 1


def _browser():
    """Headless Chromium through chromedriver; skipped where it is not installed, except on CI."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        message = f"{' and '.join(missing)} missing: scripts/setup.sh --browser installs them (Debian packages chromium, chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,2000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def test_report_renders_in_a_real_browser(tiny_run, tmp_path):
    # outside the run folder, so that nothing relative to it could be found by accident
    page = tmp_path / "alone" / "report.html"
    page.parent.mkdir()
    shutil.copy(write_report(tiny_run), page)
    browser = _browser()
    try:
        browser.get(page.as_uri())
        widths = browser.execute_script("return [...document.images].map(image => image.complete ? image.naturalWidth : 0)")
        assert len(widths) == 4 and all(width > 0 for width in widths)
        drawn = browser.execute_script(
            "return [...document.querySelectorAll('svg.chart polyline')].map(line => "
            "[line.dataset.series, line.points.numberOfItems, line.getBBox().width, line.getBBox().height])"
        )
        by_series = {series: (count, width, height) for series, count, width, height in drawn}
        assert by_series["d_loss"][0] == 8 and by_series["d_loss"][1] > 100 and by_series["d_loss"][2] > 0
        assert by_series["fid"][0] == 2
        shown = lambda: browser.execute_script("return document.getElementById('grid-image').src")  # noqa: E731
        first, last = browser.execute_script("return [...document.querySelectorAll('.strip img')].map(image => image.src)")[::2]
        assert shown() == last and first != last
        browser.execute_script("const s = document.getElementById('grid-slider'); s.value = 0; s.dispatchEvent(new Event('input'))")
        assert shown() == first
        assert browser.find_element("id", "grid-caption").text == "epoch 001"
        severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert severe == []
    finally:
        browser.quit()
