"""Plots render real content from results files (PNG and SVG, not blank, consistent colours)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.image import imread
from metrics_factory import make_result

from exfairs.plots import experiment_color, plot_aggregated, plot_fairness, plot_performance
from exfairs.results import read_result, write_result
from exfairs.summary import summarize


def _assert_not_blank(png: Path) -> np.ndarray:
    img = imread(png)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200
    rgb = img[..., :3]
    assert float(rgb.var()) > 0.0
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 10
    return rgb


def _has_colour(rgb: np.ndarray, hex_colour: str, tol: float = 0.02) -> bool:
    target = np.asarray(to_rgb(hex_colour))
    return bool(np.any(np.all(np.abs(rgb - target) < tol, axis=-1)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list:
    # Through result files, as the CLI does.
    d = tmp_path_factory.mktemp("res")
    out = []
    for exp in ("VTC", "QUEUE_FCFS"):
        for seed in (0, 1):
            p = d / f"{exp}_{seed}.json"
            write_result(make_result(exp, seed), p)
            out.append(read_result(p))
    return out


def test_performance_plot(runs: list, tmp_path: Path) -> None:
    paths = plot_performance(runs, tmp_path)
    assert sorted(p.suffix for p in paths) == [".png", ".svg"]
    assert all(p.is_file() and p.stat().st_size > 1000 for p in paths)
    png = next(p for p in paths if p.suffix == ".png")
    rgb = _assert_not_blank(png)
    assert _has_colour(rgb, experiment_color("VTC"))
    assert _has_colour(rgb, experiment_color("QUEUE_FCFS"))
    assert "TTFT" in next(p for p in paths if p.suffix == ".svg").read_text()


def test_fairness_plot_with_policy_state(runs: list, tmp_path: Path) -> None:
    paths = plot_fairness(runs, tmp_path)
    names = sorted(p.name for p in paths)
    assert "fairness_sim_toy_load1.png" in names
    assert "policy_sim_toy_load1_VTC_seed0.png" in names  # lowest seed's policy state
    for p in paths:
        if p.suffix == ".png":
            _assert_not_blank(p)
    rgb = imread(tmp_path / "fairness_sim_toy_load1.png")[..., :3]
    assert _has_colour(rgb, experiment_color("VTC"))


def test_aggregated_plot(runs: list, tmp_path: Path) -> None:
    rows = summarize(runs)
    paths = plot_aggregated(rows, tmp_path)
    assert [p.name for p in paths] == ["aggregated_sim_toy.png", "aggregated_sim_toy.svg"]
    rgb = _assert_not_blank(paths[0])
    assert _has_colour(rgb, experiment_color("QUEUE_FCFS"))


def test_no_results_no_files(tmp_path: Path) -> None:
    assert plot_performance([], tmp_path) == []
    assert plot_fairness([], tmp_path) == []
    assert plot_aggregated([], tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_experiment_colours_are_fixed_and_distinct() -> None:
    names = ["FCFS", "ROUND_ROBIN", "VTC", "ExFairS", "QUEUE_VTC", "ENGINE_VTC", "QUEUE_ExFairS"]
    colours = [experiment_color(n) for n in names]
    assert len(set(colours)) == len(colours)
    assert experiment_color("exfairs") == experiment_color("ExFairS")
    assert experiment_color("MY_PLUGIN") == experiment_color("MY_PLUGIN")
    assert experiment_color("VTC") == "#2ca02c"


def _errorbar_ys(fig_axes: list) -> list[float]:
    ys: list[float] = []
    for ax in fig_axes:
        for coll in ax.collections:  # errorbar whiskers are LineCollections
            for seg in getattr(coll, "get_segments", list)():
                ys += [float(y) for _, y in seg]
    return ys


def test_aggregated_lines_against_load_with_intervals_in_range(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    from exfairs import plots

    rows = summarize([make_result(e, s, load_factor=load) for e in ("VTC", "QUEUE_FCFS")
                      for s in (0, 1) for load in (0.5, 1.0, 1.5)])
    saved: list = []
    real_save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, *a, **k: saved.append(fig) or
                        real_save(fig, *a, **k))
    plots.plot_aggregated(rows, tmp_path, formats=["pdf"])
    (fig,) = saved
    axes = [ax for ax in fig.axes if ax.get_visible()]
    unit_axes = [ax for ax, spec in zip(axes, plots.SUMMARY_METRICS, strict=False)
                 if spec.bounds == (0.0, 1.0)]
    viol = axes[0]
    lines = [ln for ln in viol.get_lines() if ln.get_linestyle() not in ("None", "")]
    assert len(lines) == 2  # one line per experiment through the three loads
    assert list(lines[0].get_xdata()) == pytest.approx([0.494, 0.994, 1.494])  # dodged
    ys = _errorbar_ys(unit_axes)
    assert ys and min(ys) >= 0.0 and max(ys) <= 1.0
    assert any("clipped" in ax.get_title() for ax in unit_axes)
    assert (tmp_path / "aggregated_sim_toy.pdf").read_bytes()[:5] == b"%PDF-"


def test_titles_name_the_seeds_and_pdf_output(runs: list, tmp_path: Path) -> None:
    paths = plot_fairness(runs[:1], tmp_path, formats=("pdf",))
    assert {p.suffix for p in paths} == {".pdf"}
    svg = plot_performance([r for r in runs if r.info.experiment == "VTC"], tmp_path / "s",
                           formats=["svg"])
    text = next(p for p in svg if p.name.startswith("performance")).read_text()
    assert "mean over seeds 0, 1" in text
    one = plot_fairness([r for r in runs if r.info.seed == 0], tmp_path / "one",
                        formats=["svg"])
    text = next(p for p in one if p.name.startswith("fairness")).read_text()
    assert "seed 0" in text and "mean over seeds" not in text
    assert "Wilson" in text  # one seed: attainment bars get Wilson intervals over requests
    from exfairs.errors import InputError

    with pytest.raises(InputError, match="--plot-format"):
        plot_performance(runs, tmp_path, formats=["gif"])
