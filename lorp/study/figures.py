"""Figures and tables the study notebooks render into ``reports/``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..evaluate.accuracy_uncertainty import accuracy_intervals
from ..run.study_records import StudyResult
from .attribution import compared_cells, detail_budget, signals
from .compare import lorp_vs_best_baseline
from .confirmation import confirmed

# One look per method in every figure and model: colour (colour-blind-safe Okabe-Ito / tab10 hues), marker and
# dash pattern; identical series (two methods removing the same blocks) stay visible because markers and dashes
# differ and later series are drawn smaller on top.
METHOD_STYLES: dict[str, dict[str, Any]] = {
    "dense": {"color": "#000000", "marker": "", "linestyle": "--"},
    "lorp": {"color": "#D55E00", "marker": "o", "linestyle": "-"},
    "shortgpt": {"color": "#0072B2", "marker": "s", "linestyle": "--"},
    "streamline": {"color": "#009E73", "marker": "^", "linestyle": "-."},
    "angular": {"color": "#CC79A7", "marker": "v", "linestyle": ":"},
    "sleb": {"color": "#E69F00", "marker": "D", "linestyle": (0, (5, 1))},
    "last": {"color": "#56B4E9", "marker": "P", "linestyle": (0, (3, 1, 1, 1))},
    "random": {"color": "#7f7f7f", "marker": "X", "linestyle": (0, (1, 2))},
    "span-bi-nll": {"color": "#882255", "marker": "*", "linestyle": (0, (6, 2, 1, 2, 1, 2))},
}
_EXTRA = ("#8c564b", "#bcbd22", "#17becf", "#9467bd", "#e377c2", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")
_EXTRA_MARKERS = ("h", "*", "p", "<", ">", "d", "H", "8")


def method_style(method: str) -> dict[str, Any]:
    """Matplotlib style (``color``, ``marker``, ``linestyle``) of a method, the same in every figure.

    Builtins have fixed styles (:data:`METHOD_STYLES`); any other name (a plugin, an
    ablation such as ``lorp-k3``) gets one derived from a stable hash of its name,
    so it too is the same across figures, models and runs.
    """
    if method in METHOD_STYLES:
        return dict(METHOD_STYLES[method])
    import zlib

    h = zlib.crc32(method.encode("utf-8"))
    return {"color": _EXTRA[h % len(_EXTRA)], "marker": _EXTRA_MARKERS[(h // 7) % len(_EXTRA_MARKERS)],
            "linestyle": ("-", "--", "-.", ":")[(h // 61) % 4]}


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


def _save(fig, path):
    if path is not None:
        fig.savefig(path, dpi=150)
    return fig


def blocks_grid(results: StudyResult, path: str | Path | None = None):
    """Which blocks each method removes, per budget: rows (method, budget) × columns (block); red = removed.

    Args:
        results: the study result (:func:`lorp.study.load.summarize`, or its ``results.json``).
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    results = results
    n = results.num_blocks
    cells = sorted(results.cells, key=lambda r: (r.budget, r.method))
    grid = np.zeros((len(cells), n))
    for i, r in enumerate(cells):
        grid[i, r.pruned] = 1
    fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * n + 2), 0.26 * len(cells) + 1.4), constrained_layout=True)
    ax.imshow(grid, aspect="auto", cmap=ListedColormap(["#eeeeee", "#d62728"]), vmin=0, vmax=1)
    ax.set_yticks(range(len(cells)), [f"{r.method} (b={r.budget})" for r in cells], fontsize=7)
    ax.set_xticks(range(n), range(n), fontsize=6)
    ax.set_xlabel("block")
    budgets = [r.budget for r in cells]
    for i in range(1, len(cells)):
        if budgets[i] != budgets[i - 1]:
            ax.axhline(i - 0.5, color="black", lw=1)
    if results.labels:
        for b in np.flatnonzero(np.diff(results.labels)) + 0.5:
            ax.axvline(b, color="#1f77b4", lw=1, ls="--")
    ax.set_title(f"{results.model['name']}: removed blocks (red) per method and budget; "
                 "dashed: LoRP cluster boundaries", fontsize=9)
    return _save(fig, path)


def perplexity_vs_budget(results: StudyResult, path: str | Path | None = None):
    """Perplexity (log scale) vs budget, one line per method, dense as a dashed reference; one panel per corpus."""
    import matplotlib.pyplot as plt

    results = results
    corpora = list(results.dense.perplexity)
    methods = list(dict.fromkeys(r.method for r in results.cells))
    fig, axes = plt.subplots(1, len(corpora), figsize=(5.2 * len(corpora), 4), squeeze=False, constrained_layout=True)
    for ax, corpus in zip(axes[0], corpora):
        for i, m in enumerate(methods):
            pts = sorted((r.budget, r.perplexity[corpus]) for r in results.cells if r.method == m)
            ax.plot(*zip(*pts), label=m, lw=2.2 if m == "lorp" else 1.3, markersize=max(3.0, 8.0 - 0.8 * i),
                    markerfacecolor="none" if i % 2 else None, zorder=2 + i, **method_style(m))
        ax.axhline(results.dense.perplexity[corpus], color="black", ls="--", lw=1, label="dense")
        ax.set_yscale("log")
        ax.set_xlabel("budget (blocks removed)")
        ax.set_ylabel("perplexity")
        ax.set_title(f"{results.model['name']} — {corpus}", fontsize=10)
        ax.set_xticks(sorted({r.budget for r in results.cells}))
    axes[0][-1].legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def zero_shot_bars(results: StudyResult, path: str | Path | None = None):
    """Zero-shot accuracy per task and the average: dense and each method at the detail budget (grouped bars).

    Where the results carry per-item correctness, each bar has its 95 % interval as
    an error bar (Wilson per task, a bootstrap over items for the average;
    :func:`lorp.evaluate.accuracy_uncertainty.accuracy_intervals`); without it (older results) the bars
    have none and the title says so. Returns ``None`` when the run measured no
    zero-shot accuracy.
    """
    import matplotlib.pyplot as plt

    results = results
    rows = [r for r in results.cells if r.zero_shot]
    dense = results.dense.zero_shot
    if not rows or not dense:
        return None
    tasks = list(dense) + ["average"]
    series = [("dense", results.dense, [dense[t] for t in dense] + [results.dense.zero_shot_average])]
    series += [(f"{r.method} (b={r.budget})", r, [r.zero_shot[t] for t in dense] + [r.zero_shot_average])
               for r in rows]
    colours = ["#000000"] + [method_style(r.method)["color"] for r in rows]
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(tasks) + 2) + 1.8, 4), constrained_layout=True)
    any_interval = False
    for i, (name, row, vals) in enumerate(series):
        x = np.arange(len(tasks)) + i * width - 0.4 + width / 2
        ax.bar(x, 100 * np.asarray(vals), width, label=name, color=colours[i])
        ivs = accuracy_intervals(row) or {}
        lo = [v - ivs[t].low if t in ivs else np.nan for t, v in zip(tasks, vals)]
        hi = [ivs[t].high - v if t in ivs else np.nan for t, v in zip(tasks, vals)]
        if ivs:
            any_interval = True
            ax.errorbar(x, 100 * np.asarray(vals), yerr=100 * np.asarray([lo, hi]), fmt="none", ecolor="#555555",
                        elinewidth=0.8, capsize=2)
    ax.set_xticks(range(len(tasks)), tasks, fontsize=8)
    ax.set_ylabel("accuracy (%)")
    items = sorted({v for v in (results.config.get("zero_shot_limit"),) if v})
    ax.set_title(f"{results.model['name']}: zero-shot accuracy"
                 + (f" ({items[0]} items per task)" if items else "")
                 + ("\nerror bars: 95 % intervals (Wilson per task, bootstrap for the average)" if any_interval
                    else "\nno per-item results: intervals unavailable"), fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never covers a bar
    return _save(fig, path)


def speed_bars(results: StudyResult, path: str | Path | None = None):
    """Parameters and measured decode speed, dense vs pruned (two panels); ``None`` without speed figures."""
    import matplotlib.pyplot as plt

    results = results
    rows = [r for r in results.cells if r.speed]
    dense = results.dense
    if not rows or not dense.speed:
        return None
    names = ["dense"] + [f"{r.method}\n(b={r.budget})" for r in rows]
    params = [dense.parameters] + [r.parameters for r in rows]
    speed = [dense.speed["tokens_per_s"]] + [r.speed["tokens_per_s"] for r in rows]
    ideal = [dense.speed["tokens_per_s"]] + [dense.speed["tokens_per_s"] * dense.flops_per_token
                                             / r.speed["flops_per_token"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(max(8.0, 1.3 * len(names) + 3), 3.6), constrained_layout=True)
    colours = ["#000000"] + [method_style(r.method)["color"] for r in rows]
    a.bar(names, np.asarray(params) / 1e6, color=colours)
    a.set_ylabel("parameters (M)")
    b.bar(names, speed, color=colours, label="measured")
    b.scatter(names, ideal, color="red", zorder=3, label="ideal from FLOPs")
    b.set_ylabel("greedy decode tokens/s")
    b.legend(fontsize=7)
    for ax in (a, b):
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle(f"{results.model['name']}: size and decode speed", fontsize=10)
    return _save(fig, path)


def rls_chart(models: dict[str, float], paper: dict[str, float], path: str | Path | None = None):
    """RLS of each studied model next to the paper's values, with the K thresholds of eq. 6 (1.0 and 0.7)."""
    import matplotlib.pyplot as plt

    names = list(models) + list(paper)
    vals = list(models.values()) + list(paper.values())
    colors = ["#d62728"] * len(models) + ["#7f7f7f"] * len(paper)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(names) + 1.5), 3.8), constrained_layout=True)
    ax.bar(names, vals, color=colors)
    for y, label in ((1.0, "K = 2 above"), (0.7, "K = 3 above, K = 4 below")):
        ax.axhline(y, color="black", ls="--", lw=0.8)
        ax.text(len(names) - 0.5, y, label, ha="right", va="bottom", fontsize=7)
    ax.set_ylabel("RLS = -log2(mean off-diagonal S)")
    ax.set_title("Representation Locality Score: this study (red) vs the paper (grey)", fontsize=10)
    ax.tick_params(axis="x", labelsize=7, rotation=30)
    return _save(fig, path)


def heatmaps_side_by_side(matrices: dict[str, tuple[np.ndarray, Sequence[int] | None]], path: str | Path | None = None):
    """S of several models side by side (shared colour scale), cluster boundaries as white lines."""
    import matplotlib.pyplot as plt

    k = len(matrices)
    fig, axes = plt.subplots(1, k, figsize=(4.2 * k, 4.0), squeeze=False, constrained_layout=True)
    lo = min(float(np.min(s)) for s, _ in matrices.values())
    for ax, (name, (s, labels)) in zip(axes[0], matrices.items()):
        im = ax.imshow(np.asarray(s), cmap="viridis", vmin=lo, vmax=1.0)
        if labels is not None:
            for b in np.flatnonzero(np.diff(labels)) + 0.5:
                ax.axhline(b, color="white", lw=1.2)
                ax.axvline(b, color="white", lw=1.2)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("block")
        n = np.asarray(s).shape[0]
        step = 1 if n <= 12 else (2 if n <= 24 else 5)
        ticks = list(range(0, n, step))
        ax.set_xticks(ticks, [str(t) for t in ticks], fontsize=6)
        ax.set_yticks(ticks, [str(t) for t in ticks], fontsize=6)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="mean token cosine similarity")
    return _save(fig, path)


def attribution_profile(results: StudyResult, path: str | Path | None = None,
                        budget: int | None = None, allocation: str = "lorp"):
    """Which removed block does the damage: three aligned panels over the block index.

    Top: ΔNLL of removing only that block (calibration NLL minus the dense NLL, nats per
    scored token; :class:`lorp.run.study_records.Attribution`), log scale, symmetric log when some
    removal lowers the NLL. Middle: LoRP's redundancy ``r(l)`` (eq. 8) from the study's S
    and LoRP's cluster labels (a block alone in its cluster has none). Bottom: ShortGPT's
    Block Influence ``1 - cos(input, output)`` (Men et al. 2024, eq. 4), from the
    calibration pass (log scale when it spans more than a factor 20). Markers in each method's colour and marker
    (:func:`method_style`) show the blocks LoRP and the best baseline (lowest mean
    perplexity) remove at ``budget`` (default: the detail budget); dashed lines are
    LoRP's cluster boundaries; protected blocks are hatched.

    Args:
        results: the study result (:func:`lorp.study.load.summarize`, or its ``results.json``).
        path: save the figure as PNG there (150 dpi) when given.
    Returns:
        the matplotlib ``Figure``, or ``None`` when the study has no single-block removal profile.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    r = results
    if r.attribution is None or not r.cells:
        return None
    sig, n = signals(r), r.num_blocks
    budget = detail_budget(r) if budget is None else budget
    lorp, rival = compared_cells(r, budget, allocation)
    x = np.arange(n)
    fig, axes = plt.subplots(3, 1, figsize=(max(6.5, 0.26 * n + 2.5), 7.2), sharex=True, constrained_layout=True)
    panels = [(sig.delta, "ΔNLL, only this block removed\n(nats / token)", "#555555"),
              (sig.redundancy, f"{allocation} redundancy r\n(eq. 8, within cluster)", method_style(allocation)["color"]),
              (sig.block_influence, "Block Influence\n1 − cos (ShortGPT)", method_style("shortgpt")["color"])]
    marked = [(c, off) for c, off in ((lorp, -0.18), (rival, 0.18)) if c is not None]
    for i, (ax, (values, label, colour)) in enumerate(zip(axes, panels)):
        finite = np.isfinite(values)
        hatch = ["" if e else "///" for e in sig.eligible]
        ax.bar(x[finite], values[finite], color=colour, alpha=0.55, edgecolor=colour,
               hatch=[h for h, f in zip(hatch, finite) if f], lw=0.6)
        ax.set_ylabel(label, fontsize=8)
        if i == 0:
            ax.axhline(0, color="black", lw=0.6)
        elif i == 1 and finite.any():  # similarities sit near 1: show their spread, not the distance from 0
            lo, hi = float(values[finite].min()), float(values[finite].max())
            pad = 0.15 * (hi - lo) or 0.05 * abs(hi) or 0.05
            ax.set_ylim(max(0.0, lo - pad) if lo >= 0 else lo - pad, hi + pad)
        if not finite.any():
            ax.text(0.5, 0.5, "not available in this study" + (" (no method needed stream-cosine)" if i == 2 else ""),
                    transform=ax.transAxes, ha="center", va="center", fontsize=8, color="#555555")
        elif i == 1:
            for b in np.flatnonzero(~finite):
                ax.text(b, 0.02, "alone", transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=6,
                        rotation=90, color="#555555")
        for c, off in marked:
            style = method_style(c.method)
            blocks = [b for b in c.pruned if np.isfinite(values[b])]
            ax.plot(np.asarray(blocks) + off, values[blocks], ls="none", marker=style["marker"] or "o",
                    color=style["color"], markeredgecolor="black", markeredgewidth=0.5, markersize=7, zorder=5,
                    clip_on=False, label=f"{c.method} removes (budget {budget})")
        if r.labels is not None:
            for b in np.flatnonzero(np.diff(r.labels)) + 0.5:
                ax.axvline(b, color="#1f77b4", lw=0.9, ls="--")
    top, bottom = axes[0], axes[2]
    delta = sig.delta[np.isfinite(sig.delta)]
    if delta.size and (delta > 0).all():
        top.set_yscale("log")
        top.set_ylim(delta.min() / 2, delta.max() * 2)
    elif delta.size and np.any(delta != 0):
        nonzero = np.abs(delta[delta != 0])
        top.set_yscale("symlog", linthresh=float(10 ** np.floor(np.log10(max(nonzero.min(), 1e-4 * nonzero.max())))))
        top.set_ylim(-2 * np.abs(delta.min()) if delta.min() < 0 else 0, 2 * max(delta.max(), 0) or None)
    bi = sig.block_influence[np.isfinite(sig.block_influence)]
    if bi.size and (bi > 0).all() and bi.max() / bi.min() > 20:  # the first block's BI dwarfs the rest
        bottom.set_yscale("log")
        bottom.set_ylim(bi.min() / 2, bi.max() * 2)
    handles, _ = top.get_legend_handles_labels()
    handles.append(Patch(facecolor="white", edgecolor="#555555", hatch="///", label="protected (never removed)"))
    fig.legend(handles=handles, fontsize=7, loc="outside lower center", ncols=3, frameon=False)
    axes[-1].set_xticks(x, [str(b) for b in x], fontsize=7)
    axes[-1].set_xlabel("block")
    axes[-1].set_xlim(-0.7, n - 0.3)
    a = r.attribution
    fig.suptitle(f"{r.model.get('name', '?')}: which removed block does the damage\nsingle-block removal on "
                 f"{a.describe()}\ndense NLL {a.dense_nll:.3f} nats/token; dashed: {allocation} cluster boundaries",
                 fontsize=9)
    return _save(fig, path)


def verdict_chart(studies: dict[str, StudyResult], path: str | Path | None = None):
    """LoRP's perplexity over the best baseline's, per model and budget, with 95 % intervals (log scale).

    Each point is the geometric mean perplexity ratio with its paired t-interval on the held-out
    confirmation windows where the study has them (:func:`lorp.study.confirmation.confirmed`), else on
    the screening windows (:func:`lorp.study.compare.lorp_vs_best_baseline`, hollow markers). Above the
    line at 1, LoRP is worse. ``None`` when no model has a comparison.
    """
    import matplotlib.pyplot as plt

    points = []  # (label, ratio, low, high, held out)
    for name, res in studies.items():
        r = res
        held = {o["budget"]: o["comparison"] for o in confirmed(r)}
        for b in sorted({c.budget for c in r.cells}):
            if b in held:
                k = held[b]
                points.append((f"{name}\nbudget {b}", k.ratio, k.ratio_low, k.ratio_high, True))
                continue
            v = lorp_vs_best_baseline([c for c in r.cells if c.budget == b])
            if v:
                points.append((f"{name}\nbudget {b}", v["ratio"], v["low"], v["high"], False))
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(points) + 1.5), 3.6), constrained_layout=True)
    style = method_style("lorp")
    for i, (_, ratio, low, high, held) in enumerate(points):
        ax.errorbar([i], [ratio], yerr=[[ratio - low], [high - ratio]], fmt=style["marker"], color=style["color"],
                    mfc=style["color"] if held else "white", capsize=3)
    ax.axhline(1.0, color="black", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_xticks(range(len(points)), [p[0] for p in points], fontsize=7)
    ax.set_ylabel("LoRP ÷ best baseline\n(geometric mean perplexity)")
    ax.set_title("Above 1: LoRP worse. Filled: held-out confirmation windows; hollow: screening windows", fontsize=9)
    return _save(fig, path)
