"""One self-contained HTML report of a set of runs (`exfairs-sim report DIR --html OUT`).

The file needs nothing beside it: the summary table (mean and 95% interval over seeds, per
backend, scenario, load and experiment, the interval clipped to the metric's range as in
`exfairs.summary`), a per-client table (each client's mean over seeds), and the figures as inline
SVG: the aggregated lines against load (`exfairs.plots.plot_aggregated`) and, per (scenario,
load), the fairness figure of the lowest seed (`plot_fairness`, which reads that seed's records).
Experiments appear in `experiment_sort_key` order and with `experiment_color` everywhere, as in
the plots. The file is written atomically; every value is HTML-escaped.
"""

from __future__ import annotations

import html
import math
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from exfairs.atomic import atomic_write_text
from exfairs.plots import experiment_color, plot_aggregated, plot_fairness
from exfairs.results import RunResult, read_result
from exfairs.summary import SUMMARY_METRICS, Stat, experiment_sort_key, summarize

#: Per-client columns: (AggregateMetrics field, heading, decimals).
CLIENT_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("requests", "requests", 0), ("slo_attainment", "SLO attainment", 3),
    ("mean_ttft_ms", "mean TTFT (ms)", 1), ("p99_ttft_ms", "p99 TTFT (ms)", 1),
    ("mean_tpot_ms", "mean TPOT (ms)", 2), ("mean_e2el_ms", "mean e2e (ms)", 1),
    ("request_throughput", "req/s", 3),
)

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}
table{border-collapse:collapse;font-size:13px;margin:1em 0}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f3f3f3} td.l,th.l{text-align:left}
.sw{display:inline-block;width:.8em;height:.8em;margin-right:.3em;vertical-align:middle}
figure{margin:1em 0} svg{max-width:100%;height:auto}
"""


def _fmt(x: float, decimals: int) -> str:
    return "–" if math.isnan(x) else f"{x:.{decimals}f}"


def _stat_cell(st: Stat, decimals: int = 3) -> str:
    if math.isnan(st.mean):
        return "–"
    if math.isnan(st.ci95):
        return _fmt(st.mean, decimals)
    if st.clipped:
        return f"{_fmt(st.mean, decimals)} [{_fmt(st.lo, decimals)}, {_fmt(st.hi, decimals)}]"
    return f"{_fmt(st.mean, decimals)} ± {_fmt(st.ci95, decimals)}"


def _exp_cell(experiment: str) -> str:
    return (f'<td class="l"><span class="sw" style="background:{experiment_color(experiment)}">'
            f"</span>{html.escape(experiment)}</td>")


def summary_table(results: Sequence[RunResult]) -> str:
    """The summary rows as an HTML table."""
    head = "".join(f"<th>{html.escape(m.label)}{' ↑' if m.higher_is_better else ' ↓'}</th>"
                   for m in SUMMARY_METRICS)
    rows = []
    for r in summarize(results):
        cells = "".join(f"<td>{_stat_cell(st)}</td>" for st in r.values)
        rows.append(f'<tr><td class="l">{html.escape(r.backend)}</td>'
                    f'<td class="l">{html.escape(r.scenario)}</td><td>{r.load_factor:g}</td>'
                    f"{_exp_cell(r.experiment)}<td>{len(r.seeds)}</td>{cells}</tr>")
    return ('<table><tr><th class="l">backend</th><th class="l">scenario</th><th>load</th>'
            f'<th class="l">experiment</th><th>seeds</th>{head}</tr>\n'
            + "\n".join(rows) + "</table>")


def client_table(results: Sequence[RunResult]) -> str:
    """Per (backend, scenario, load, experiment, client): the mean over seeds of each
    `CLIENT_COLUMNS` metric, as an HTML table."""
    groups: dict[tuple[str, str, float, str], list[RunResult]] = {}
    for r in results:
        i = r.info
        groups.setdefault((i.backend, i.scenario, float(i.load_factor), i.experiment),
                          []).append(r)
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in CLIENT_COLUMNS)
    rows = []
    for (backend, scen, load, exp), runs in sorted(
            groups.items(), key=lambda kv: (kv[0][:3], experiment_sort_key(kv[0][3]))):
        for c in runs[0].clients:
            cells = []
            for key, _, dec in CLIENT_COLUMNS:
                vals = [float(getattr(r.metrics.client(c.name).metrics, key)) for r in runs
                        if any(cm.client == c.name for cm in r.metrics.per_client)]
                vals = [v for v in vals if not math.isnan(v)]
                cells.append(f"<td>{_fmt(sum(vals) / len(vals), dec) if vals else '–'}</td>")
            rows.append(f'<tr><td class="l">{html.escape(backend)}</td>'
                        f'<td class="l">{html.escape(scen)}</td><td>{load:g}</td>'
                        f'{_exp_cell(exp)}<td class="l">{html.escape(c.name)}</td>'
                        f"<td>{c.weight:g}</td>{''.join(cells)}</tr>")
    return ('<table><tr><th class="l">backend</th><th class="l">scenario</th><th>load</th>'
            '<th class="l">experiment</th><th class="l">client</th><th>weight</th>'
            f"{head}</tr>\n" + "\n".join(rows) + "</table>")


_XML_HEAD = re.compile(r"^\s*<\?xml[^>]*\?>\s*(<!DOCTYPE[^>]*>\s*)?", re.S)


def inline_svg(path: Path) -> str:
    """The SVG file at `path` as markup to place inside HTML (XML prolog and doctype removed)."""
    return _XML_HEAD.sub("", path.read_text(encoding="utf-8"))


def _figures(results: Sequence[RunResult], files: dict[int, Path], tmp: Path) -> list[Path]:
    made = list(plot_aggregated(summarize(results), tmp / "agg", formats=("svg",)))
    first: dict[tuple[str, str, float], int] = {}
    for r in results:
        k = (r.info.backend, r.info.scenario, float(r.info.load_factor))
        first[k] = min(first.get(k, r.info.seed), r.info.seed)
    full = [read_result(files[i]) for i, r in enumerate(results)
            if r.info.seed == first[(r.info.backend, r.info.scenario, float(r.info.load_factor))]]
    made += [p for p in plot_fairness(full, tmp / "fair", formats=("svg",))
             if p.name.startswith("fairness")]
    return made


def render_report(results: Sequence[RunResult], files: Sequence[Path], title: str, *,
                  figures: bool = True) -> str:
    """The HTML document of `results` (light results, no records needed); `files` are their
    results files (same order), read in full only for the per-run fairness figures."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             f"</title><style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p>{len(results)} runs. Intervals: Student-t 95% over seeds, clipped to the "
             "metric's range where shown as [lo, hi]; ↑ higher is better, ↓ lower.</p>",
             "<h2>Summary (mean over seeds)</h2>", summary_table(results),
             "<h2>Per client (mean over seeds)</h2>", client_table(results)]
    if figures and results:
        parts.append("<h2>Figures</h2>")
        with tempfile.TemporaryDirectory(prefix="exfairs-report-") as tmp:
            for p in _figures(results, dict(enumerate(files)), Path(tmp)):
                parts.append(f"<figure>{inline_svg(p)}<figcaption>{html.escape(p.stem)}"
                             "</figcaption></figure>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_html_report(paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *,
                      figures: bool = True) -> Path:
    """Write the report of the results files in `paths` (files or directories of ``*.json``
    results) to `out`, atomically; returns `out`."""
    files: list[Path] = []
    for p in map(Path, paths):
        files += sorted(p.glob("*.json")) if p.is_dir() else [p]
    files = [f for f in files if not f.name.startswith(".")]
    results = [read_result(f, records=False) for f in files]
    title = "ExFairS report — " + ", ".join(str(Path(p).name) for p in paths)
    dest = Path(out)
    atomic_write_text(dest, render_report(results, files, title, figures=figures))
    return dest
