"""PNG plots (matplotlib, Agg backend: no display needed), each written atomically."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from lm.atomic import atomic_write_bytes  # noqa: E402


def _save(fig, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def training_curve(rows: list[dict], path: Path, title: str = "") -> None:
    """Train and validation loss (nats/token) against steps, from metrics.jsonl rows."""
    train = [(r["step"], r["train_loss"]) for r in rows if r.get("train_loss") is not None]
    valid = [(r["step"], r["val_loss"]) for r in rows if r.get("val_loss") is not None]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train", linewidth=1, alpha=0.8)
    if valid:
        ax.plot(*zip(*valid), label="validation", marker="o", markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title or "training curve")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def loss_histogram(nll: np.ndarray, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(nll, bins=60, color="tab:blue", alpha=0.8)
    ax.axvline(float(np.mean(nll)), color="black", linestyle="--", label=f"mean {np.mean(nll):.3f}")
    ax.set_xlabel("per-token loss (nats)")
    ax.set_ylabel("tokens")
    ax.legend()
    _save(fig, path)


def reliability_diagram(confidence: np.ndarray, accuracy: np.ndarray, counts: np.ndarray, path: Path) -> None:
    _save(reliability_figure(confidence, accuracy, counts), path)


def reliability_figure(confidence: np.ndarray, accuracy: np.ndarray, counts: np.ndarray) -> Figure:
    """Calibration: per confidence bin (of `metrics.TokenStats.reliability`), the top-1 accuracy as a bar over the
    bin and as a point at the bin's mean top-1 probability; a calibrated model's points lie on the diagonal."""
    bins = len(counts)
    centers = (np.arange(bins) + 0.5) / bins
    filled = counts > 0
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    ax.bar(centers[filled], accuracy[filled], width=1 / bins, alpha=0.7, edgecolor="black",
           label="accuracy per bin")
    ax.plot(confidence[filled], accuracy[filled], marker="o", color="tab:red",
            label="accuracy at the bin's mean confidence")
    ax.set_xlabel("top-1 probability")
    ax.set_ylabel("top-1 accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    return fig


def confidence_histogram(top_prob: np.ndarray, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(top_prob, bins=50, range=(0, 1), color="tab:green", alpha=0.8)
    ax.set_xlabel("probability of the most likely next token")
    ax.set_ylabel("tokens")
    _save(fig, path)


def sweep_curves(curves: dict[str, list[tuple[float, float]]], path: Path, best: str | None = None,
                 title: str = "") -> None:
    """Validation nats/char against training time (seconds), one line per trial of a sweep; the best drawn bold."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, points in curves.items():
        if not points:
            continue
        is_best = label == best
        ax.plot(*zip(*points), marker="o", markersize=3, linewidth=2.5 if is_best else 1,
                alpha=1.0 if is_best else 0.7, label=f"{label} (best)" if is_best else label, zorder=3 if is_best else 2)
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("validation loss (nats/char)")
    ax.set_title(title or "sweep: validation curves")
    ax.grid(alpha=0.3)
    if any(curves.values()):
        ax.legend(fontsize="small", loc="upper right", ncol=2 if len(curves) > 8 else 1)
    _save(fig, path)
