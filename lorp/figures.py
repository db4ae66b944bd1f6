"""Figures and tables the study notebooks render into ``reports/``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def similarity_heatmap(similarity: np.ndarray, labels: Sequence[int] | None = None,
                       pruned: Sequence[int] = (), title: str = "", path: str | Path | None = None):
    """Heatmap of S (block i vs block j) with LoRP cluster boundaries and pruned blocks.

    Args:
        similarity: float ``[N, N]``.
        labels: cluster label per block; a line is drawn wherever the label
            changes between consecutive blocks, and a colour strip shows the labels.
        pruned: blocks marked in red on both axes.
        path: save the figure as PNG there (150 dpi) when given.
    Returns:
        the matplotlib ``Figure``.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    s = np.asarray(similarity)
    n = s.shape[0]
    fig, (ax_strip, ax) = plt.subplots(2, 1, figsize=(7.2, 7.4), gridspec_kw={"height_ratios": [1, 18]},
                                       sharex=True, constrained_layout=True)
    sns.heatmap(s, ax=ax, cmap="viridis", square=False, cbar_kws={"label": "mean token cosine similarity"},
                xticklabels=range(n), yticklabels=range(n))
    ax.set_xlabel("block j (input hidden states)")
    ax.set_ylabel("block i")
    if labels is not None:
        lab = np.asarray(labels)
        for b in np.flatnonzero(lab[1:] != lab[:-1]) + 1:
            ax.axhline(b, color="white", lw=1.6)
            ax.axvline(b, color="white", lw=1.6)
        ax_strip.imshow(lab[None, :], aspect="auto", cmap="tab10", vmin=0, vmax=9, extent=(0, n, 0, 1))
        for b in range(n):
            ax_strip.text(b + 0.5, 0.5, str(lab[b]), ha="center", va="center", fontsize=6, color="white")
        ax_strip.set_yticks([])
        ax_strip.set_ylabel("cluster", rotation=0, ha="right", va="center", fontsize=8)
    else:
        ax_strip.axis("off")
    for tick in list(ax.get_xticklabels()) + list(ax.get_yticklabels()):
        tick.set_fontsize(6)
        if int(tick.get_text()) in set(pruned):
            tick.set_color("red")
            tick.set_fontweight("bold")
    ax_strip.set_title(title + ("\n(red ticks: pruned blocks; white lines: cluster boundaries)" if pruned else ""), fontsize=9)
    if path is not None:
        fig.savefig(path, dpi=150)
    return fig


def pruned_blocks_table(results: dict[str, Any]) -> str:
    """Markdown tables: the pruned blocks with their reasons, then perplexity before/after."""
    lines = ["| block | stage | cluster | score | reason |", "|---:|---:|---:|---:|---|"]
    for r in results["removals"]:
        score = "" if r["score"] is None else f"{r['score']:.4f}"
        cluster = "" if r["cluster"] is None else r["cluster"]
        lines.append(f"| {r['block']} | {r['stage']} | {cluster} | {score} | {r['reason']} |")
    lines += ["", "| corpus | tokens | perplexity dense | perplexity pruned | ratio |", "|---|---:|---:|---:|---:|"]
    before, after = results["perplexity"]["before"], results["perplexity"]["after"]
    for name in before:
        b, a = before[name]["perplexity"], after[name]["perplexity"]
        lines.append(f"| {name} | {before[name]['tokens']} | {b:.2f} | {a:.2f} | {a / b:.2f}× |")
    p = results["parameters"]
    lines += ["", f"Parameters: {p['before']:,} → {p['after']:,} ({100 * p['removed_fraction']:.1f} % removed); "
              f"blocks: {results['num_blocks']} → {results['num_blocks'] - len(results['pruned'])}; "
              f"RLS = {results['rls']:.3f}, K = {results['k']} ({results['k_source']})."]
    return "\n".join(lines) + "\n"
