"""Progress events written by a sweep inside a kernel and followed by `lorp study` in the terminal."""

import json

from lorp.run import progress


def test_report_appends_json_lines_only_when_the_variable_is_set(tmp_path, monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    progress.report(stage="cell", done=1, total=2)  # no file: nothing happens, no error
    path = tmp_path / "events.jsonl"
    monkeypatch.setenv(progress.ENV, str(path))
    progress.report(stage="cells", total=4, message="4 cells to compute")
    progress.report(stage="cell", done=1, total=4, method="lorp", budget=8)
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["stage"] for e in events] == ["cells", "cell"]
    assert events[1]["method"] == "lorp" and events[1]["time"] >= events[0]["time"]


def test_describe_estimates_time_left_from_the_mean_cell_time():
    event = {"stage": "cell", "done": 2, "total": 6, "method": "shortgpt", "budget": 4, "time": 1060.0}
    # 2 cells in 60 s -> 30 s per cell, 4 cells left -> 120 s
    assert progress.describe(event, started=1000.0) == "cell 2/6 shortgpt b4 done · about 2 min 00 s left"
    assert progress.describe({**event, "done": 6}, started=1000.0) == "cell 6/6 shortgpt b4 done"
    assert progress.describe({**event, "done": 6, "seed": 2}, started=1000.0) == "cell 6/6 shortgpt b4 s2 done"
    assert progress.describe({"stage": "dense", "message": "dense model"}, None) == "dense model"


def test_follower_echoes_each_complete_line_once(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text("")
    lines = []
    with progress.Follower(path, lines.append, prefix="[1/1] m: ", interval=0.01):
        with open(path, "a") as fh:
            fh.write(json.dumps({"stage": "cells", "total": 2, "message": "2 cells", "time": 0.0}) + "\n")
            fh.write(json.dumps({"stage": "cell", "done": 1, "total": 2, "method": "lorp", "budget": 3,
                                 "time": 10.0}) + "\n")
            fh.write('{"stage": "cell", "do')  # a line still being written is not read yet
    assert lines == ["[1/1] m: 2 cells", "[1/1] m: cell 1/2 lorp b3 done · about 0 min 10 s left"]
