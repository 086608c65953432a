"""The plots say what they show."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from training.evaluation import plots


def test_reliability_figure_labels_each_series_by_what_it_plots():
    confidence = np.array([0.0, 0.35, 0.62, 0.91])
    accuracy = np.array([0.0, 0.30, 0.70, 0.80])
    counts = np.array([0, 10, 20, 30])
    fig = plots.reliability_figure(confidence, accuracy, counts)
    try:
        ax = fig.axes[0]
        lines = {line.get_label(): line for line in ax.get_lines()}
        point_line = lines["accuracy at the bin's mean confidence"]
        assert list(point_line.get_xdata()) == [0.35, 0.62, 0.91]  # x: mean confidence
        assert list(point_line.get_ydata()) == [0.30, 0.70, 0.80]  # y: accuracy
        bars = [c for c in ax.containers if c.get_label() == "accuracy per bin"][0]
        assert [round(b.get_height(), 6) for b in bars] == [0.30, 0.70, 0.80]
        assert [round(b.get_x() + b.get_width() / 2, 6) for b in bars] == [0.375, 0.625, 0.875]  # bin centres
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert "mean confidence" not in legend
        assert set(legend) == {"perfect calibration", "accuracy per bin", "accuracy at the bin's mean confidence"}
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("top-1 probability", "top-1 accuracy")
    finally:
        plt.close(fig)


def test_reliability_diagram_writes_a_png(tmp_path):
    path = tmp_path / "calibration.png"
    plots.reliability_diagram(np.array([0.2, 0.7]), np.array([0.1, 0.8]), np.array([5, 5]), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
