"""The study's one answer to "which is the best baseline": the rule and its tie-break, by hand."""

from lorp.run.study_records import StudyCell
from lorp.study.query import best_baseline, best_baseline_by_accuracy, cell


def row(method, budget, ppl, seed=0, acc=None):
    return StudyCell(method=method, budget=budget, pruned=[1], perplexity={"ptb": ppl}, mean_perplexity=ppl,
                     parameters=1, seconds={}, seed=seed, zero_shot_average=acc)


def test_lowest_perplexity_then_method_name_then_seed():
    cells = [row("lorp", 4, 10.0), row("shortgpt", 4, 20.0), row("angular", 4, 20.0), row("sleb", 4, 30.0),
             row("streamline", 8, 5.0), row("angular", 4, 20.0, seed=1), row("angular", 4, 15.0, seed=2)]
    baselines = {"shortgpt", "angular", "sleb", "streamline"}
    assert best_baseline(cells, 4, among=baselines) is cells[6]  # seed 2's 15.0 across every seed given
    assert best_baseline(cells, 4, seed=0, among=baselines) is cells[2]  # tie at 20.0: "angular" < "shortgpt"
    assert best_baseline(cells, 4, seed=0, among={"shortgpt", "sleb"}) is cells[1]
    assert best_baseline(cells, 4, among=baselines | {"lorp"}) is cells[0]  # only what `among` names competes
    assert best_baseline(cells, 8, among={"lorp"}) is None and best_baseline([], 4, among=baselines) is None
    tied = [row("b", 4, 20.0, seed=1), row("b", 4, 20.0, seed=0)]
    assert best_baseline(tied, 4, among={"b"}) is tied[1]


def test_best_by_accuracy_and_the_cell_lookup():
    cells = [row("shortgpt", 4, 20.0, acc=0.5), row("angular", 4, 30.0, acc=0.5), row("sleb", 4, 10.0),
             row("lorp", 4, 12.0, seed=1), row("lorp", 4, 11.0, seed=0)]
    assert best_baseline_by_accuracy(cells, 4, among={"shortgpt", "angular", "sleb"}) is cells[1]
    assert best_baseline_by_accuracy(cells, 4, among={"sleb"}) is None  # no accuracy measured
    assert cell(cells, "lorp", 4) is cells[4] and cell(cells, "lorp", 4, seed=1) is cells[3]
    assert cell(cells, "lorp", 8) is None
