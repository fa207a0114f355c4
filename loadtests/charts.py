"""PNG charts of the showdown and the demo, ready for a slide as they are.

matplotlib runs with its Agg backend (files, no window: this works over ssh, in CI and in
a container). Each era keeps one colour and one marker in every chart, so that a class
that has seen one chart can read the next. Sizes and fonts are chosen for a projector:
12 x 6.75 inches at 100 dpi is a 1200 x 675 picture, 16:9.

A level where an era hit its wall (more than half its requests failed, or the server
died) is drawn with a red-edged marker and a "wall" label: the line stops there because
the showdown stopped climbing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display needed

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from servers.eras import ERAS

from .measure import Measurement

__all__ = ["demo_chart", "showdown_charts"]

STYLE = {
    "cgi": ("#d62728", "o"),
    "fastcgi": ("#ff7f0e", "s"),
    "wsgi": ("#1f77b4", "^"),
    "asgi": ("#2ca02c", "D"),
}
SLIDE = (12, 6.75)
MODELS = {era.name: era.model for era in ERAS}

# The three charts of a workload: (file prefix, title, y label, value, log y?)
METRICS: tuple[tuple[str, str, str, Callable[[Measurement], float | None], bool], ...] = (
    ("throughput", "throughput", "successful requests per second", lambda m: m.ok_rps, False),
    ("p99", "99th percentile latency", "p99 latency (ms, log scale)", lambda m: m.p99, True),
    (
        "memory",
        "server memory",
        "server peak memory (MiB RSS, log scale)",
        lambda m: m.server_peak_mib,
        True,
    ),
)


def _thousands(value: float, _: int) -> str:
    return f"{value:,.0f}"


def _plain(value: float, _: int) -> str:
    """1,000 or 2.5 or 0.2: as a person writes it, with no exponent."""
    return f"{value:,.0f}" if value >= 10 else f"{value:g}"


def _plot_metric(
    ax: Axes,
    results: Sequence[Measurement],
    workload: str,
    value: Callable[[Measurement], float | None],
    log_y: bool,
) -> None:
    for era, (colour, marker) in STYLE.items():
        points = sorted((m for m in results if m.era == era and m.workload == workload),
                        key=lambda m: m.users)  # fmt: skip
        pairs = [(m.users, y) for m in points if (y := value(m)) is not None]
        xs = [x for x, _ in pairs]
        ys = [y for _, y in pairs]
        if not xs:
            continue
        ax.plot(xs, ys, color=colour, marker=marker, linewidth=2.5, markersize=8,
                label=f"{era}: {MODELS.get(era, '')}")  # fmt: skip
        for m in points:
            y = value(m)
            if m.status != "ok" and y is not None:
                ax.plot([m.users], [y], marker=marker, markersize=14, markerfacecolor="none",
                        markeredgecolor="red", markeredgewidth=2)  # fmt: skip
                ax.annotate("wall", (m.users, y), textcoords="offset points", xytext=(8, 6),
                            color="red", fontsize=12)  # fmt: skip
    # Log axes read "1,000", not "10^3": ticks at the levels run (x) and at 1, 2, 5 x 10^k (y).
    ax.set_xscale("log")
    levels = sorted({m.users for m in results if m.workload == workload})
    ax.set_xticks(levels)
    ax.xaxis.set_major_formatter(FuncFormatter(_thousands))
    ax.xaxis.set_minor_formatter(NullFormatter())
    if log_y:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(FuncFormatter(_plain))
    ax.set_xlabel("concurrent users (log scale)", fontsize=13)
    ax.grid(True, which="major", alpha=0.3)
    ax.tick_params(labelsize=12)


def showdown_charts(
    results: Sequence[Measurement], workloads: Iterable[str], out: Path
) -> list[Path]:
    """Three charts per workload and one overview; returns the paths written."""
    workloads = [w for w in workloads if any(m.workload == w for m in results)]
    written = []
    for workload in workloads:
        for prefix, title, ylabel, value, log_y in METRICS:
            fig, ax = plt.subplots(figsize=SLIDE, dpi=100)
            _plot_metric(ax, results, workload, value, log_y)
            ax.set_title(f"{title} against concurrency: workload '{workload}'", fontsize=16)
            ax.set_ylabel(ylabel, fontsize=13)
            ax.legend(fontsize=12, loc="best")
            fig.tight_layout()
            path = out / f"{prefix}-{workload}.png"
            fig.savefig(path)
            plt.close(fig)
            written.append(path)
    if workloads:
        rows = len(workloads)
        fig, axes = plt.subplots(rows, 3, figsize=(18, 5 * rows), dpi=100, squeeze=False)
        for row, workload in enumerate(workloads):
            for col, (_, title, ylabel, value, log_y) in enumerate(METRICS):
                ax = axes[row][col]
                _plot_metric(ax, results, workload, value, log_y)
                ax.set_title(f"{workload}: {title}", fontsize=14)
                ax.set_ylabel(ylabel, fontsize=11)
        handles, labels = axes[0][0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=12)
        fig.suptitle("the showdown: four eras, one app, rising concurrency", fontsize=18)
        fig.tight_layout(rect=(0, 0.06, 1, 0.96))
        path = out / "overview.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def demo_chart(
    rows: Sequence[tuple[str, float, float | None, float | None, float]],
    sleep_ms: int,
    path: Path,
) -> Path:
    """The demo's picture: per era, /hello req/s; /hello and /sleep p99; peak memory.

    ``rows``: (era, hello req/s, hello p99 ms, sleep p99 ms, server peak MiB); a p99 of
    None (no such request finished) is drawn as a note, not as a bar of made-up height."""
    eras = [r[0] for r in rows]
    colours = [STYLE.get(e, ("grey", "o"))[0] for e in eras]
    fig, axes = plt.subplots(1, 3, figsize=SLIDE, dpi=100)
    panels = (
        ("fast: /hello requests per second", "requests per second", [r[1] for r in rows]),
        (
            f"p99 latency (ms): /hello, and /sleep\nof {sleep_ms:,} ms (hatched)",
            "milliseconds (log scale)",
            None,
        ),
        ("server peak memory", "MiB (RSS)", [r[4] for r in rows]),
    )
    for ax, (title, ylabel, values) in zip(axes, panels, strict=True):
        if values is None:  # the latency panel: two bars per era, log scale
            ax.set_yscale("log")
            for x, (row, colour) in enumerate(zip(rows, colours, strict=True)):
                for offset, value, hatch in ((-0.2, row[2], ""), (0.2, row[3], "//")):
                    if value is None:
                        # x in data coordinates, y in the axes': at the foot of the panel.
                        ax.text(x + offset, 0.02, "none finished", rotation=90, ha="center",
                                va="bottom", fontsize=10,
                                transform=ax.get_xaxis_transform())  # fmt: skip
                        continue
                    ax.bar(x + offset, max(value, 0.1), 0.4, color=colour, hatch=hatch,
                           alpha=0.6 if hatch else 1.0)  # fmt: skip
            ax.axhline(sleep_ms, color="black", linestyle="--", linewidth=1)
            ax.set_xticks(range(len(eras)), eras)
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.yaxis.set_major_formatter(FuncFormatter(_plain))
            # The bars take each era's colour; the legend shows only the fill that differs.
            ax.legend(
                handles=[
                    Patch(facecolor="grey", label="/hello p99"),
                    Patch(facecolor="grey", alpha=0.6, hatch="//", label="/sleep p99"),
                    Line2D([], [], color="black", linestyle="--", label="the designed wait"),
                ],
                fontsize=10,
                loc="upper left",
            )
        else:
            ax.bar(eras, values, color=colours)
            ax.yaxis.set_major_formatter(FuncFormatter(_thousands))
        ax.set_title(title, fontsize=13)
        ax.set_ylabel(ylabel, fontsize=12)
        ax.tick_params(labelsize=12)
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle("make demo: four eras, one app, the same short load", fontsize=16)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
