"""One self-contained report.html per run: config, sample grids by epoch, curves, evaluation, timing, warnings.

Self-contained because people mail it and open it offline: pictures are embedded as data: URIs,
curves are inline SVG drawn here, the slider is a few lines of inline script, and a
Content-Security-Policy forbids the browser from fetching anything else.
"""

from __future__ import annotations

import base64
import json
import math
import statistics
from html import escape
from pathlib import Path
from typing import Any

import yaml

from gankit.errors import GankitError
from gankit.files import RunPaths, atomic_write
from gankit.records import ADA_FIELDS, fields, of_kind, read_records

REPORT_NAME = "report.html"
MAX_CURVE_POINTS = 1000  # longer series are thinned evenly; a browser gains nothing from more
CURVE_GROUPS = {
    "Losses": ("d_loss", "g_loss"),
    "D outputs (mean)": ("d_real", "d_fake"),
    "Gradient norms": ("g_grad_norm", "d_grad_norm"),
    "Adaptive augmentation (ADA)": ADA_FIELDS,
}
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
CHART_WIDTH, CHART_HEIGHT, MARGIN = 560, 220, 48

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
pre { background: #f6f6f6; padding: 1em; overflow: auto; max-height: 30em; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
.chart text { font-size: 11px; fill: #444; }
.strip { display: flex; overflow-x: auto; gap: 0.5em; } .strip figure { flex: none; margin: 0; text-align: center; }
.strip img { height: 120px; } .strip figcaption { font-size: 12px; }
#grid-image { width: 420px; image-rendering: pixelated; border: 1px solid #ccc; }
.warning { color: #a30000; } .muted { color: #777; }
"""

SLIDER_SCRIPT = """
const slider = document.getElementById("grid-slider");
const frames = document.querySelectorAll(".strip img");
slider.addEventListener("input", () => {
  const frame = frames[Number(slider.value)];
  document.getElementById("grid-image").src = frame.src;
  document.getElementById("grid-caption").textContent = frame.alt;
});
"""

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Render the run folder `run_dir` into one HTML file (default RUN_DIR/report.html), atomically."""
    paths = RunPaths(Path(run_dir))
    if not paths.config.is_file():
        raise GankitError(f"{paths.root} is not a run folder (no config.yaml); give a folder that `gankit train` wrote")
    out = Path(out) if out else paths.root / REPORT_NAME
    with atomic_write(out) as handle:
        handle.write(render_report(paths).encode())
    return out


def render_report(paths: RunPaths) -> str:
    config_text = paths.config.read_text()
    config = yaml.safe_load(config_text) or {}
    records = read_records(paths.metrics)
    training = of_kind(records, "train")
    evaluations = of_kind(records, "eval")
    warnings = of_kind(records, "warning", "note")
    sections = [
        _summary(config, training),
        _section("Samples from fixed noise", _sample_grids(paths.samples)),
        _section("Training curves", _training_curves(training)),
        _section("Metrics", _metric_curves(evaluations) + _latest_evaluation(evaluations, paths.root / "eval.json")),
        _section("Timing", _timing(training, evaluations)),
        _section(f"Warnings ({len(warnings)})", _warnings(warnings)),
        _section("Config", f"<pre>{escape(config_text)}</pre>"),
    ]
    title = escape(f"gankit report: {config.get('name', 'run')} ({paths.root.name})")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\"><link rel=\"icon\" href=\"data:,\">"
        f"<title>{title}</title><style>{STYLE}</style></head>\n<body>\n<h1>{title}</h1>\n"
        + "\n".join(sections)
        + f"\n<script>{SLIDER_SCRIPT}</script>\n</body></html>\n"
    )


def _section(heading: str, body: str) -> str:
    return f"<section><h2>{escape(heading)}</h2>\n{body}\n</section>"


def _summary(config: dict[str, Any], training: list[dict]) -> str:
    model, data, loss = config.get("model", {}), config.get("data", {}), config.get("loss", {})
    last = training[-1] if training else {}
    rows = {
        "model": f"{model.get('name')}" + (" (conditional)" if model.get("conditional") else ""),
        "loss": loss.get("name"),
        "dataset": data.get("dataset"),
        "step": last.get("step", "not started"),
        "epoch": f"{last.get('epoch', 0)} of {config.get('train', {}).get('epochs')}",
    }
    return _table(rows.items())


def _table(rows, header: tuple[str, str] | None = None) -> str:
    head = f"<tr><th>{escape(header[0])}</th><th>{escape(header[1])}</th></tr>" if header else ""
    body = "".join(f"<tr><td>{escape(str(key))}</td><td>{escape(_format(value))}</td></tr>" for key, value in rows)
    return f"<table>{head}{body}</table>"


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def _sample_grids(samples_dir: Path) -> str:
    """A slider over the epoch grids (and the final one) above a strip that shows them all."""
    grids = sorted(samples_dir.glob("epoch-*.png")) + [p for p in [samples_dir / "final.png"] if p.exists()]
    if not grids:
        return "<p class=\"muted\">No sample grids yet (they are written after each epoch).</p>"
    captions = [p.stem.replace("-", " ").replace("final", "end of training") for p in grids]
    uris = [_data_uri(p) for p in grids]
    strip = "".join(
        f"<figure><img src=\"{uri}\" alt=\"{escape(caption)}\"><figcaption>{escape(caption)}</figcaption></figure>"
        for uri, caption in zip(uris, captions)
    )
    last = len(grids) - 1
    return (
        f"<p><input type=\"range\" id=\"grid-slider\" min=\"0\" max=\"{last}\" value=\"{last}\" aria-label=\"sample grid\"> "
        f"<span id=\"grid-caption\">{escape(captions[-1])}</span></p>"
        f"<img id=\"grid-image\" src=\"{uris[-1]}\" alt=\"selected sample grid\">"
        f"<div class=\"strip\">{strip}</div>"
    )


def _training_curves(training: list[dict]) -> str:
    if not training:
        return "<p class=\"muted\">No training log yet.</p>"
    steps = [r["step"] for r in training]
    charts = [
        _svg_chart(title, steps, {name: [r.get(name) for r in training] for name in names})
        for title, names in CURVE_GROUPS.items()
        if any(name in r for r in training for name in names)
    ]
    return f"<div class=\"charts\">{''.join(charts)}</div>"


def _metric_curves(evaluations: list[dict]) -> str:
    """One chart per metric: their scales differ by orders of magnitude."""
    names = list(dict.fromkeys(name for r in evaluations for name, value in r["eval"].items() if _is_number(value)))
    steps = [r["step"] for r in evaluations]
    charts = [_svg_chart(name, steps, {name: [r["eval"].get(name) for r in evaluations]}) for name in names]
    return f"<div class=\"charts\">{''.join(charts)}</div>" if charts else ""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _svg_chart(title: str, steps: list[int], series: dict[str, list[Any]]) -> str:
    """A line chart of each series against the step, as inline SVG with min/max axis labels."""
    points = {name: [(s, v) for s, v in zip(steps, values) if _is_number(v)] for name, values in series.items()}
    points = {name: _thin(pairs) for name, pairs in points.items() if pairs}
    if not points:
        return ""
    xs = [x for pairs in points.values() for x, _ in pairs]
    ys = [y for pairs in points.values() for _, y in pairs]
    x_low, x_high = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y_low, y_high = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    plot_width, plot_height = CHART_WIDTH - 2 * MARGIN, CHART_HEIGHT - 2 * MARGIN

    def place(x: float, y: float) -> tuple[float, float]:
        return MARGIN + (x - x_low) / (x_high - x_low) * plot_width, MARGIN + (y_high - y) / (y_high - y_low) * plot_height

    lines, legend = [], []
    for index, (name, pairs) in enumerate(points.items()):
        colour = COLOURS[index % len(COLOURS)]
        placed = [place(x, y) for x, y in pairs]
        # a single evaluation is a dot: a one-point polyline draws nothing
        shape = f"polyline points=\"{' '.join(f'{px:.1f},{py:.1f}' for px, py in placed)}\"" if len(placed) > 1 else f"circle r=\"3\" cx=\"{placed[0][0]:.1f}\" cy=\"{placed[0][1]:.1f}\""
        lines.append(f"<{shape} data-series=\"{escape(name)}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\"/>")
        legend.append(f"<text x=\"{MARGIN + 130 * index}\" y=\"{CHART_HEIGHT - 8}\"><tspan style=\"fill: {colour}\">\u25a0</tspan> {escape(name)}</text>")
    bottom, right = CHART_HEIGHT - MARGIN, CHART_WIDTH - MARGIN
    axes = (
        f"<rect x=\"{MARGIN}\" y=\"{MARGIN}\" width=\"{plot_width}\" height=\"{plot_height}\" fill=\"none\" stroke=\"#bbb\"/>"
        f"<text x=\"{MARGIN - 4}\" y=\"{MARGIN + 4}\" text-anchor=\"end\">{float(y_high):.4g}</text>"
        f"<text x=\"{MARGIN - 4}\" y=\"{bottom}\" text-anchor=\"end\">{float(y_low):.4g}</text>"
        f"<text x=\"{MARGIN}\" y=\"{bottom + 14}\">{x_low}</text>"
        f"<text x=\"{right}\" y=\"{bottom + 14}\" text-anchor=\"end\">step {x_high}</text>"
        f"<text x=\"{MARGIN}\" y=\"{MARGIN - 12}\" font-weight=\"bold\">{escape(title)}</text>"
    )
    return (
        f"<svg class=\"chart\" role=\"img\" aria-label=\"{escape(title)}\" width=\"{CHART_WIDTH}\" height=\"{CHART_HEIGHT}\" "
        f"viewBox=\"0 0 {CHART_WIDTH} {CHART_HEIGHT}\" xmlns=\"http://www.w3.org/2000/svg\">{axes}{''.join(lines)}{''.join(legend)}</svg>"
    )


def _thin(pairs: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(pairs) <= MAX_CURVE_POINTS:
        return pairs
    stride = math.ceil(len(pairs) / MAX_CURVE_POINTS)
    return pairs[::stride] + ([pairs[-1]] if (len(pairs) - 1) % stride else [])


def _latest_evaluation(evaluations: list[dict], eval_json: Path) -> str:
    """The newest evaluation: eval.json (`gankit eval`, with its extractor and counts) unless the
    training log holds a later one."""
    latest = None
    if evaluations:
        record = evaluations[-1]
        latest = {"metrics": record["eval"], "step": record["step"], "epoch": record["epoch"]} | fields(record)
        del latest["eval"]
    if eval_json.is_file():
        offline = json.loads(eval_json.read_text())
        if latest is None or offline.get("step", -1) >= latest["step"]:
            latest = offline | {"source": f"{eval_json.name} (gankit eval)"}
    if latest is None:
        return "<p class=\"muted\">No evaluation yet: set eval.every_epochs=N for training, or run <code>gankit eval RUN_DIR</code>.</p>"
    latest.setdefault("source", "metrics.jsonl (during training)")
    about = [(key, value) for key, value in latest.items() if key != "metrics"]
    return (
        f"<h3>Latest evaluation (step {escape(str(latest.get('step', '?')))})</h3>"
        + _table(latest["metrics"].items(), ("metric", "value"))
        + "<h4>Computed with</h4>"
        + _table(about)
    )


def _timing(training: list[dict], evaluations: list[dict]) -> str:
    rates = [r["images_per_s"] for r in training if _is_number(r.get("images_per_s")) and r["images_per_s"] > 0]
    if not rates:
        return "<p class=\"muted\">No throughput logged yet.</p>"
    rows = [("images/s (median of log windows)", f"{statistics.median(rates):,.0f}")]
    training_seconds = sum(r["seconds"] for r in training if _is_number(r.get("seconds")))
    if training_seconds:
        rows.append(("training time (sum of log windows)", _duration(training_seconds)))
    evaluation_seconds = sum(r.get("seconds", 0) for r in evaluations)
    if evaluation_seconds:
        rows.append(("evaluation time during training", _duration(evaluation_seconds)))
    return _table(rows)


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {rest:02d} s" if minutes else f"{seconds:.1f} s"


def _warnings(warnings: list[dict]) -> str:
    if not warnings:
        return "<p class=\"muted\">None.</p>"
    rows = "".join(
        f"<tr class=\"warning\"><td>{escape(str(w.get('step')))}</td><td>{escape(str(w.get('epoch')))}</td>"
        f"<td>{escape(str(w['warning']))}</td><td>{escape(str(w.get('message', '')))}</td>"
        f"<td>{escape(', '.join(f'{k}={_format(v)}' for k, v in fields(w).items() if k not in ('warning', 'message')))}</td></tr>"
        for w in warnings
    )
    return f"<table><tr><th>step</th><th>epoch</th><th>kind</th><th>message</th><th>numbers</th></tr>{rows}</table>"
