"""What every plot of `exfairs.plots` shares: the formats, the fixed colours of experiments and
clients, grouping runs into figures (backend, scenario, load factor), titles, file names, the
counted records, and the atomic save. Internal to the plotting modules (`exfairs.plots`,
`exfairs.plot_fairness`); the public names are re-exported by `exfairs.plots`."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import to_hex, to_rgb
from matplotlib.figure import Figure

from exfairs.atomic import atomic_temp_path
from exfairs.metrics import FloatArray
from exfairs.records import RequestRecord
from exfairs.results import RunResult
from exfairs.summary import experiment_sort_key

#: The figure formats written by default, and all that can be asked for.
DEFAULT_FORMATS: tuple[str, ...] = ("png", "svg")
FORMATS: tuple[str, ...] = ("png", "svg", "pdf")

# Base colours of the known policies (matplotlib's tab10); other policies get a colour from their
# name's digest, so a name keeps its colour across plots, runs and machines.
_POLICY_COLORS = {
    "FCFS": "#1f77b4",
    "ROUND_ROBIN": "#ff7f0e",
    "VTC": "#2ca02c",
    "EXFAIRS": "#d62728",
    "EDF": "#9467bd",
    "ANDES": "#8c564b",
    "DLPM": "#e377c2",
}
_SPARE_COLORS = ("#bcbd22", "#17becf", "#7f7f7f", "#393b79", "#637939", "#8c6d31", "#843c39")
_CLIENT_COLORS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
                  "#ff9da7", "#9c755f", "#bab0ac")


def experiment_color(experiment: str) -> str:
    """The colour of an experiment name (hex). The policy picks the hue; the mode its shade:
    priority mode the base colour, gate (``QUEUE_``) darker, engine (``ENGINE_``) lighter."""
    name = experiment.strip().upper()
    shade = 0.0
    for prefix, s in (("QUEUE_", -0.35), ("ENGINE_", 0.4)):
        if name.startswith(prefix):
            name, shade = name[len(prefix):], s
            break
    base = _POLICY_COLORS.get(name)
    if base is None:
        h = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest(), "little")
        base = _SPARE_COLORS[h % len(_SPARE_COLORS)]
    rgb = np.asarray(to_rgb(base))
    target = np.ones(3) if shade > 0 else np.zeros(3)
    return to_hex(rgb + abs(shade) * (target - rgb))


def client_color(index: int) -> str:
    """The colour of the client at `index` in the workload's client order."""
    return _CLIENT_COLORS[index % len(_CLIENT_COLORS)]


# ----------------------------------------------------------------------------------------------
# Helpers

_Group = tuple[str, str, float]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


def _group(results: Sequence[RunResult]) -> dict[_Group, dict[str, list[RunResult]]]:
    out: dict[_Group, dict[str, list[RunResult]]] = {}
    for r in results:
        key = (r.info.backend, r.info.scenario, float(r.info.load_factor))
        out.setdefault(key, {}).setdefault(r.info.experiment, []).append(r)
    for exps in out.values():
        for runs in exps.values():
            runs.sort(key=lambda r: r.info.seed)
    return {key: dict(sorted(exps.items(), key=lambda kv: experiment_sort_key(kv[0])))
            for key, exps in sorted(out.items())}


def _seeds_text(runs: dict[str, list[RunResult]]) -> str:
    seeds = sorted({r.info.seed for rs in runs.values() for r in rs})
    shown = ", ".join(map(str, seeds[:8])) + (", ..." if len(seeds) > 8 else "")
    return f"seed {shown}" if len(seeds) == 1 else f"mean over seeds {shown}"


def _title(key: _Group) -> str:
    backend, scenario, load = key
    return f"{scenario} — load {load:g}× — {backend}"


def _stem(kind: str, key: _Group) -> str:
    backend, scenario, load = key
    return f"{kind}_{_slug(backend)}_{_slug(scenario)}_load{load:g}"


def counted_records(result: RunResult) -> list[RequestRecord]:
    """The records that the run's metrics counted: arrivals in the metrics window
    ``[window_start_s, window_end_s)`` (the last arrival included when the window was the whole
    run, i.e. ends at the last arrival)."""
    start, end = result.metrics.window_start_s, result.metrics.window_end_s
    last = max((r.arrival_s for r in result.records), default=end)
    return [r for r in result.records
            if start <= r.arrival_s and (r.arrival_s < end or (end == last and r.arrival_s == end))]


def _client_names(runs: dict[str, list[RunResult]]) -> list[str]:
    names: list[str] = []
    for rs in runs.values():
        for r in rs:
            for c in r.clients:
                if c.name not in names:
                    names.append(c.name)
    return names


def _no_data(ax: Axes) -> None:
    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="0.4")


def check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """`formats` as a tuple, or InputError naming the first unknown one."""
    from exfairs.errors import InputError

    out = tuple(f.strip().lower() for f in formats)
    for f in out:
        if f not in FORMATS:
            raise InputError(f"unknown plot format (choose from {', '.join(FORMATS)})",
                             field="--plot-format", value=f)
    if not out:
        raise InputError("give at least one format", field="--plot-format", value="")
    return out


def _save(fig: Figure, out_dir: Path, stem: str,
          formats: Sequence[str] = DEFAULT_FORMATS) -> list[Path]:
    paths: list[Path] = []
    for ext in check_formats(formats):
        dest = out_dir / f"{stem}.{ext}"
        with atomic_temp_path(dest) as tmp:
            fig.savefig(tmp, format=ext, dpi=110)
        paths.append(dest)
    return paths


def _legend_by_experiment(fig: Figure, experiments: Sequence[str]) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(color=experiment_color(e), label=e) for e in experiments]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6),
               frameon=False, title="experiment")


def finish_client_axis(ax: Axes, clients: list[str], ylabel: str, drawn: bool) -> None:
    """The per-client x axis shared by the box and bar panels (one tick per client), the y label,
    the grid, and "no data" when nothing was `drawn`."""
    ax.set_xticks(range(len(clients)), clients, rotation=30 if len(clients) > 6 else 0)
    ax.set_xlim(-0.6, len(clients) - 0.4)
    ax.set_xlabel("client")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    if not drawn:
        _no_data(ax)


def _grouped_boxes(ax: Axes, runs: dict[str, list[RunResult]], clients: list[str],
                   value: str, ylabel: str) -> None:
    exps = list(runs)
    width = 0.8 / max(1, len(exps))
    drawn = False
    for k, exp in enumerate(exps):
        data: list[FloatArray] = []
        pos: list[float] = []
        for ci, name in enumerate(clients):
            vals = []
            for r in runs[exp]:
                for rec in counted_records(r):
                    if rec.client != name:
                        continue
                    v = rec.ttft_s if value == "ttft" else rec.e2e_s
                    if v is not None:
                        vals.append(v)
            if vals:
                data.append(np.asarray(vals))
                pos.append(ci - 0.4 + width * (k + 0.5))
        if data:
            drawn = True
            bp = ax.boxplot(data, positions=pos, widths=width * 0.85, patch_artist=True,
                            showfliers=True, flierprops={"markersize": 2, "alpha": 0.5},
                            medianprops={"color": "black"}, manage_ticks=False)
            for patch in bp["boxes"]:
                patch.set_facecolor(experiment_color(exp))
                patch.set_alpha(0.85)
    finish_client_axis(ax, clients, ylabel, drawn)


def _span(results: Sequence[RunResult]) -> tuple[float, float]:
    lo, hi = math.inf, -math.inf
    for r in results:
        for rec in r.records:
            lo = min(lo, rec.arrival_s)
            if rec.token_times_s:
                hi = max(hi, rec.token_times_s[-1])
    return lo, hi


def _bin_width(lo: float, hi: float) -> float:
    span = max(hi - lo, 1e-9)
    return max(span / 40.0, 1e-3)
