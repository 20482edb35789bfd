"""Notebook 06's figures: reliability diagram and interval (forest) plot draw what they are given."""
import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from helpers.evaluation import plots, reliability


def test_reliability_diagram_plots_each_table():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, (50, 50))
    truth = rng.uniform(0, 1, p.shape) < p
    tables = {"raw": reliability.reliability_bins(p, truth), "sharp": reliability.reliability_bins(p**3, truth)}
    fig = plots.reliability_diagram(tables, title="t")
    ax = fig.axes[0]
    lines = [line for line in ax.get_lines() if line.get_label() in tables]
    assert len(lines) == 2
    np.testing.assert_allclose(lines[0].get_xdata(), tables["raw"]["mean_probability"])
    assert len(fig.axes[1].patches) == 20  # 10 bins x 2 tables
    with pytest.raises(ValueError, match="at least one"):
        plots.reliability_diagram({})
    with pytest.raises(ValueError, match="lacks columns"):
        plots.reliability_diagram({"bad": pd.DataFrame({"count": [1]})})


def test_interval_plot_rows_and_labels():
    table = pd.DataFrame({"n": [5, 7], "mean": [0.8, 0.6], "low": [0.7, 0.4], "high": [0.9, 0.75]},
                         index=["no hair", "hair"])
    fig = plots.interval_plot(table, reference=0.7)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["no hair  (n=5)", "hair  (n=7)"]
    with pytest.raises(ValueError, match="mean, low and high"):
        plots.interval_plot(pd.DataFrame({"mean": []}))
