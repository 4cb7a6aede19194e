"""Charts of the benchmark results: reads bench/results/*.json and writes PNGs into
docs/benchmarks/.

    .venv/bin/python -m bench.plots
    .venv/bin/python -m bench.plots --results bench/results --out docs/benchmarks

throughput.png: deliveries/s per configuration (store x processes), one panel per endpoint
count, with the bare-loop ceilings, the Svix reference and the targets. latency.png:
p50/p95/p99 per configuration (log scale, ms) with the p99 target and Svix's p99; when a
latency result carries its samples, also latency-cdf.png. operator-scale.png: time until
all endpoints are Ready, operator against a bare client, per size.

The functions named *_series turn result dicts into what is drawn, without matplotlib, so
they can be tested; keys a result lacks are skipped, not guessed."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
OUT = HERE.parent / "docs" / "benchmarks"
DPI = 100

# Reference figures, by endpoint count.
SVIX_DELIVERIES_PER_SECOND = {1: 952.0, 10: 3050.0}
TARGET_DELIVERIES_PER_SECOND = {1: 1000.0, 10: 3500.0}
SVIX_P99_MS = {1: 7.4, 10: 14.0}
TARGET_P99_MS = {1: 10.0, 10: 20.0}
CEILING_CLIENTS = ("aiohttp", "httpx")
LATENCY_SAMPLE_KEYS = ("latencies_ms", "samples_ms", "latency_samples_ms")
CDF_POINTS = 1000

Result = Mapping[str, Any]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _int(value: Any, default: int) -> int:
    number = _number(value)
    return int(number) if number is not None else default


def load_results(directory: Path) -> dict[str, dict[str, Any]]:
    """Every readable JSON object in `directory`, by file stem; others are reported and
    skipped."""
    results: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            print(f"skipping {path}: {exc}", file=sys.stderr)
            continue
        if isinstance(data, dict):
            results[path.stem] = data
        else:
            print(f"skipping {path}: not a JSON object", file=sys.stderr)
    return results


def _of_kind(results: Mapping[str, Result], prefix: str) -> list[tuple[str, Result]]:
    return [(name, data) for name, data in sorted(results.items()) if name.startswith(prefix)]


def _config_label(data: Result, name: str) -> str:
    store = data.get("store") or name
    processes = _int(data.get("processes"), 1)
    return f"{store}\n{processes} process{'es' if processes != 1 else ''}"


def _config_key(data: Result) -> tuple[str, int]:
    return (str(data.get("store") or ""), _int(data.get("processes"), 1))


def _ceiling_value(entry: Any) -> float | None:
    if isinstance(entry, Mapping):
        return _number(entry.get("deliveries_per_second"))
    return _number(entry)


def _ratio_text(ratio: Any) -> str | None:
    """`ratio_to_ceiling` as a bar annotation: one number (to the aiohttp ceiling) or one
    per client."""
    number = _number(ratio)
    if number is not None:
        return f"{_ratio(number)} of ceiling"
    if isinstance(ratio, Mapping):
        parts = [
            f"{_ratio(number)} of {client}"
            for client, value in ratio.items()
            if (number := _number(value)) is not None
        ]
        return "\n".join(parts) or None
    return None


def _ratio(number: float) -> str:
    return f"{number:.0%}" if number < 2 else f"{number:.1f}x"


def _ms(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


@dataclass
class Bar:
    label: str
    value: float
    note: str | None = None


@dataclass
class Panel:
    """One endpoint count: the measured bars and the horizontal reference lines."""

    endpoints: int
    bars: list[Bar] = field(default_factory=list)
    lines: dict[str, float] = field(default_factory=dict)


def throughput_series(results: Mapping[str, Result]) -> list[Panel]:
    """One panel per endpoint count in the throughput-* results: a bar per configuration
    (deliveries/s), and lines for the ceilings (median over the panel's results that carry
    one), the Svix reference and the target."""
    panels: dict[int, Panel] = {}
    ceilings: dict[int, dict[str, list[float]]] = {}
    rows = sorted(
        _of_kind(results, "throughput-"),
        key=lambda item: (_int(item[1].get("endpoints"), 0), _config_key(item[1])),
    )
    for name, data in rows:
        rate = _number(data.get("deliveries_per_second"))
        if rate is None:
            continue
        endpoints = _int(data.get("endpoints"), 0)
        panel = panels.setdefault(endpoints, Panel(endpoints))
        panel.bars.append(
            Bar(_config_label(data, name), rate, _ratio_text(data.get("ratio_to_ceiling")))
        )
        ceiling = data.get("ceiling")
        if isinstance(ceiling, Mapping):
            for client, entry in ceiling.items():
                value = _ceiling_value(entry)
                if value is not None:
                    ceilings.setdefault(endpoints, {}).setdefault(str(client), []).append(value)
    for endpoints, panel in panels.items():
        for client, values in sorted(ceilings.get(endpoints, {}).items()):
            panel.lines[f"ceiling, bare loop with {client}"] = statistics.median(values)
        if endpoints in SVIX_DELIVERIES_PER_SECOND:
            panel.lines["Svix"] = SVIX_DELIVERIES_PER_SECOND[endpoints]
        if endpoints in TARGET_DELIVERIES_PER_SECOND:
            panel.lines["target"] = TARGET_DELIVERIES_PER_SECOND[endpoints]
    return [panels[k] for k in sorted(panels)]


@dataclass
class LatencyRow:
    label: str
    percentiles: dict[str, float]  # "p50" -> ms, only those present


@dataclass
class LatencyPanel:
    endpoints: int
    rows: list[LatencyRow] = field(default_factory=list)
    lines: dict[str, float] = field(default_factory=dict)


PERCENTILES = ("p50", "p95", "p99")


def latency_series(results: Mapping[str, Result]) -> list[LatencyPanel]:
    """One panel per endpoint count in the latency-* results: p50/p95/p99 in ms per
    configuration, and lines for the p99 target and Svix's p99."""
    panels: dict[int, LatencyPanel] = {}
    rows = sorted(
        _of_kind(results, "latency-"),
        key=lambda item: (_int(item[1].get("endpoints"), 0), _config_key(item[1])),
    )
    for name, data in rows:
        percentiles = {
            p: value
            for p in PERCENTILES
            if (value := _number(data.get(f"{p}_ms"))) is not None and value > 0
        }
        if not percentiles:
            continue
        endpoints = _int(data.get("endpoints"), 0)
        panel = panels.setdefault(endpoints, LatencyPanel(endpoints))
        panel.rows.append(LatencyRow(_config_label(data, name), percentiles))
    for endpoints, panel in panels.items():
        if endpoints in TARGET_P99_MS:
            panel.lines["target p99"] = TARGET_P99_MS[endpoints]
        if endpoints in SVIX_P99_MS:
            panel.lines["Svix p99"] = SVIX_P99_MS[endpoints]
    return [panels[k] for k in sorted(panels)]


def cdf(samples: Sequence[float], points: int = CDF_POINTS) -> tuple[list[float], list[float]]:
    """The empirical CDF of `samples` (x sorted, y the fraction at or below x), thinned to
    about `points` points, always keeping the largest sample."""
    ordered = sorted(samples)
    n = len(ordered)
    if not n:
        return [], []
    step = max(1, n // points)
    indices = list(range(0, n, step))
    if indices[-1] != n - 1:
        indices.append(n - 1)
    return [ordered[i] for i in indices], [(i + 1) / n for i in indices]


def latency_cdf_series(
    results: Mapping[str, Result],
) -> list[tuple[str, list[float], list[float]]]:
    """(label, x ms, y fraction) for each latency result that carries its samples."""
    series = []
    for name, data in _of_kind(results, "latency-"):
        for key in LATENCY_SAMPLE_KEYS:
            samples = data.get(key)
            if isinstance(samples, list):
                values = [v for s in samples if (v := _number(s)) is not None and v > 0]
                if values:
                    endpoints = _int(data.get("endpoints"), 0)
                    label = _config_label(data, name).replace("\n", ", ")
                    xs, ys = cdf(values)
                    series.append((f"{label}, {endpoints} endpoint(s)", xs, ys))
                break
    return series


@dataclass
class ScaleRow:
    endpoints: int
    operator_seconds: float
    bare_client_seconds: float | None
    ratio: float | None


def operator_scale_series(results: Mapping[str, Result]) -> list[ScaleRow]:
    """Per size in the operator-scale-* results: seconds until all endpoints are Ready
    under the operator, and what a bare client needs for the same writes."""
    rows = []
    for _, data in _of_kind(results, "operator-scale-"):
        operator = _number(data.get("operator_seconds_to_all_ready"))
        endpoints = _number(data.get("endpoints"))
        if operator is None or endpoints is None:
            continue
        bare = _number(data.get("bare_client_seconds"))
        ratio = _number(data.get("ratio_to_bare_client"))
        if ratio is None and bare:
            ratio = operator / bare
        rows.append(ScaleRow(int(endpoints), operator, bare, ratio))
    return sorted(rows, key=lambda row: row.endpoints)


# Rendering (matplotlib is imported only here, so the series above need none).

LINE_STYLES = {
    "ceiling, bare loop with aiohttp": ("tab:green", "-"),
    "ceiling, bare loop with httpx": ("tab:olive", "-"),
    "Svix": ("tab:purple", "--"),
    "Svix p99": ("tab:purple", "--"),
    "target": ("tab:red", ":"),
    "target p99": ("tab:red", ":"),
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _reference_lines(ax: Any, lines: Mapping[str, float]) -> None:
    for label, value in lines.items():
        color, style = LINE_STYLES.get(label, ("tab:gray", "-."))
        ax.axhline(value, color=color, linestyle=style, linewidth=1.5, label=f"{label}: {value:,g}")


def _plain_log_ticks(axis: Any) -> None:
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,g}"))
    axis.set_minor_formatter(NullFormatter())


def _endpoints_title(endpoints: int) -> str:
    return f"{endpoints} endpoint{'s' if endpoints != 1 else ''}"


def draw_throughput(panels: Sequence[Panel], path: Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5.5 * len(panels), 4.8), squeeze=False, constrained_layout=True
    )
    for ax, panel in zip(axes[0], panels, strict=True):
        labels = [bar.label for bar in panel.bars]
        values = [bar.value for bar in panel.bars]
        drawn = ax.bar(range(len(values)), values, color="tab:blue", width=0.6)
        ax.set_xticks(range(len(values)), labels, fontsize=8)
        for rect, bar in zip(drawn, panel.bars, strict=True):
            text = f"{bar.value:,.0f}/s" + (f"\n{bar.note}" if bar.note else "")
            ax.annotate(
                text,
                (rect.get_x() + rect.get_width() / 2, rect.get_height()),
                ha="center",
                va="bottom",
                fontsize=7,
                xytext=(0, 2),
                textcoords="offset points",
            )
        _reference_lines(ax, panel.lines)
        top = max([*values, *panel.lines.values()], default=1.0)
        ax.set_ylim(0, top * 1.2)
        ax.set_title(_endpoints_title(panel.endpoints), fontsize=10)
        ax.set_ylabel("deliveries per second")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("Delivery throughput (deliveries/s, higher is better)", fontsize=11)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def draw_latency(panels: Sequence[LatencyPanel], path: Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5.5 * len(panels), 4.8), squeeze=False, constrained_layout=True
    )
    colors = {"p50": "tab:blue", "p95": "tab:orange", "p99": "tab:red"}
    width = 0.8 / len(PERCENTILES)
    for ax, panel in zip(axes[0], panels, strict=True):
        for k, p in enumerate(PERCENTILES):
            xs = [n + (k - 1) * width for n, row in enumerate(panel.rows) if p in row.percentiles]
            ys = [row.percentiles[p] for row in panel.rows if p in row.percentiles]
            if not xs:
                continue
            drawn = ax.bar(xs, ys, width=width, color=colors[p], label=p, alpha=0.85)
            for rect, value in zip(drawn, ys, strict=True):
                ax.annotate(
                    _ms(value),
                    (rect.get_x() + rect.get_width() / 2, rect.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=6,
                    xytext=(0, 1),
                    textcoords="offset points",
                )
        ax.set_xticks(range(len(panel.rows)), [row.label for row in panel.rows], fontsize=8)
        _reference_lines(ax, panel.lines)
        ax.set_yscale("log")
        values = [v for row in panel.rows for v in row.percentiles.values()]
        everything = [*values, *panel.lines.values()]
        ax.set_ylim(min(everything) / 3, max(everything) * 3)
        ax.set_xlim(-0.7, len(panel.rows) - 0.3)
        _plain_log_ticks(ax.yaxis)
        ax.set_title(_endpoints_title(panel.endpoints), fontsize=10)
        ax.set_ylabel("event sent to delivery received (ms, log scale)")
        ax.grid(axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("End-to-end latency (ms, lower is better)", fontsize=11)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def draw_latency_cdf(series: Sequence[tuple[str, list[float], list[float]]], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    for label, xs, ys in series:
        ax.step(xs, ys, where="post", label=label)
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis)
    ax.set_xlabel("event sent to delivery received (ms, log scale)")
    ax.set_ylabel("fraction of deliveries")
    ax.set_ylim(0, 1.01)
    ax.grid(which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("End-to-end latency, cumulative distribution", fontsize=11)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def draw_operator_scale(rows: Sequence[ScaleRow], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    width = 0.38
    positions = range(len(rows))
    operator = ax.bar(
        [x - width / 2 for x in positions],
        [row.operator_seconds for row in rows],
        width=width,
        color="tab:blue",
        label="operator: create to all Ready",
    )
    bare_rows = [
        (x, row) for x, row in zip(positions, rows, strict=True) if row.bare_client_seconds
    ]
    if bare_rows:
        ax.bar(
            [x + width / 2 for x, _ in bare_rows],
            [row.bare_client_seconds for _, row in bare_rows],
            width=width,
            color="tab:gray",
            label="bare client: the same API writes",
        )
    for rect, row in zip(operator, rows, strict=True):
        text = f"{row.operator_seconds:,.1f} s" + (
            f"\n{row.ratio:.2f}x bare" if row.ratio is not None else ""
        )
        ax.annotate(
            text,
            (rect.get_x() + rect.get_width() / 2, rect.get_height()),
            ha="center",
            va="bottom",
            fontsize=7,
            xytext=(0, 2),
            textcoords="offset points",
        )
    ax.set_xticks(list(positions), [f"{row.endpoints:,} endpoints" for row in rows])
    ax.set_ylabel("seconds")
    top = max([row.operator_seconds for row in rows], default=1.0)
    ax.set_ylim(0, top * 1.2)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("Operator scale: time until all endpoints are Ready (s)", fontsize=11)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def render(results: Mapping[str, Result], out: Path) -> list[Path]:
    """Draw every chart the results allow; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    throughput = throughput_series(results)
    if throughput:
        written.append(out / "throughput.png")
        draw_throughput(throughput, written[-1])
    latency = latency_series(results)
    if latency:
        written.append(out / "latency.png")
        draw_latency(latency, written[-1])
    cdfs = latency_cdf_series(results)
    if cdfs:
        written.append(out / "latency-cdf.png")
        draw_latency_cdf(cdfs, written[-1])
    scale = operator_scale_series(results)
    if scale:
        written.append(out / "operator-scale.png")
        draw_operator_scale(scale, written[-1])
    return written


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    results = load_results(args.results)
    if not results:
        sys.exit(f"no results in {args.results}")
    written = render(results, args.out)
    if not written:
        sys.exit(f"nothing to draw from the results in {args.results}")
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
