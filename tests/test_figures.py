"""Figure conventions: one look per method everywhere, identical series visible, integer block ticks."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from lorp.run.study_records import StudyResult  # noqa: E402
from lorp.study.figures import METHOD_STYLES, heatmaps_side_by_side, method_style, perplexity_vs_budget  # noqa: E402


def study(cells):
    return StudyResult.from_json(raw(cells))


def raw(cells):
    return {"model": {"name": "m"}, "num_blocks": 12, "rls": 0.8, "k": 3, "config": {},
            "dense": {"perplexity": {"a": 10.0}, "mean_perplexity": 10.0, "parameters": 1}, "cells": cells}


def cell(method, budget, ppl):
    return {"method": method, "budget": budget, "pruned": [1], "perplexity": {"a": ppl}, "mean_perplexity": ppl,
            "parameters": 1}


def test_every_builtin_has_its_own_colour_marker_and_dashes():
    looks = [(s["color"], s["marker"], str(s["linestyle"])) for m, s in METHOD_STYLES.items() if m != "dense"]
    for i in range(3):
        assert len({look[i] for look in looks}) == len(looks)
    assert method_style("lorp-k3") == method_style("lorp-k3")  # a plugin's look is stable across calls
    assert method_style("lorp-k3") != METHOD_STYLES["lorp"]


def test_identical_series_stay_visible_and_keep_their_colour_across_figures():
    cells = [cell(m, b, 20.0 + b) for m in ("streamline", "angular") for b in (2, 4)]  # the same numbers
    fig = perplexity_vs_budget(study(cells))
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    a, b = lines["streamline"], lines["angular"]
    assert list(a.get_ydata()) == list(b.get_ydata())
    assert a.get_marker() != b.get_marker() and a.get_linestyle() != b.get_linestyle()
    assert a.get_markersize() != b.get_markersize()
    assert matplotlib.colors.to_hex(a.get_color()) == METHOD_STYLES["streamline"]["color"].lower()
    # reversing the method order in another model does not change a method's colour
    fig2 = perplexity_vs_budget(study(list(reversed(cells))))
    lines2 = {ln.get_label(): ln for ln in fig2.axes[0].get_lines()}
    assert lines2["angular"].get_color() == b.get_color()


def test_side_by_side_heatmaps_have_integer_block_ticks():
    fig = heatmaps_side_by_side({"a": (np.eye(30), [0] * 15 + [1] * 15), "b": (np.eye(18), None)})
    for ax, n in zip(fig.axes, (30, 18)):
        ticks = ax.get_xticks()
        assert all(float(t).is_integer() for t in ticks) and max(ticks) < n
        assert [t.get_text() for t in ax.get_xticklabels()] == [str(int(t)) for t in ticks]
