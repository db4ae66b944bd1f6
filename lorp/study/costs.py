"""Where a study's time goes: wall time per stage, from the timings its records carry.

Stages: loading the model, the calibration pass, block selection (similarity-based
methods, and SLEB separately since it runs the model), the single-block removal
profile (:class:`lorp.run.study_records.Attribution`), perplexity (dense and per
method), zero-shot accuracy, decode speed, the held-out confirmation windows, the random floor,
SLEB's search at a second token count, the calibration-corpus axis (its extra passes), the selection ×
healing grid (each healer's fit and the healed models' evaluation), and the rest (notebook start-up,
figures, reports: the model's wall time minus everything timed). Times are what
the numbers cost when computed: a rerun that reuses cached cells or a cached
calibration pass reports the original cost, not its own.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..evaluate.compute_floor import variant_flops
from ..run.study_records import StudyResult

STAGES = ("load model", "calibration pass", "selection", "SLEB selection", "attribution profile", "perplexity (dense)",
          "perplexity (pruned)", "zero-shot", "decode speed", "confirmation windows", "random floor",
          "SLEB at a second token count", "calibration-corpus axis", "healing grid",
          "other (notebook, figures, reports)")


def stage_seconds(results: StudyResult) -> dict[str, float]:
    """Seconds per stage of one model's study (``results.json``), keyed as :data:`STAGES`.

    ``"perplexity (pruned)"`` is also split per method under ``"perplexity: <method>"``
    keys (cells that reused another cell's evaluation cost 0, detailed ones too). Records written before
    evaluations carried stage timings put a detailed cell's whole evaluation under
    ``"zero-shot"`` less its perplexity share estimated from that method's other cells
    (0 if it has none), and the dense evaluation under ``"perplexity (dense)"``.
    Every run seed's cells count (:attr:`StudyResult.all_cells`), and the extra seeds' calibration
    passes. Rows and confirmation entries ``lorp study --add`` put beside the study are left out: they are
    that run's cost (:attr:`lorp.run.study_records.StudyResult.added`), not the study's. Raises nothing;
    missing timings count 0.
    """
    r = results
    cs = r.compute_seconds or {}
    dense_stages = cs.get("dense_stages") or {}
    out = dict.fromkeys(STAGES, 0.0)
    out["load model"] = float(cs.get("load") or 0.0)
    out["calibration pass"] = float(cs.get("calibration") or 0.0)
    out["attribution profile"] = float(cs.get("attribution") or 0.0)
    if dense_stages:
        out["perplexity (dense)"] = float(dense_stages.get("perplexity", 0.0))
        out["zero-shot"] += float(dense_stages.get("zero_shot", 0.0))
        out["decode speed"] += float(dense_stages.get("speed", 0.0))
    else:
        out["perplexity (dense)"] = float(cs.get("dense") or 0.0)
    per_method: dict[str, float] = {}
    for seed, run in list((r.seeds or {}).items())[1:]:  # the extra seeds' calibration passes
        out["calibration pass"] += float((run.get("calibration") or {}).get("seconds") or 0.0)
    for c in (c for c in r.all_cells if not c.added):  # added rows cost the `--add` run, not the study
        s = c.seconds or {}
        out["SLEB selection" if c.nll_passes else "selection"] += float(s.get("selection", 0.0))
        if c.evaluation_reused:  # another cell's evaluation: computed (and counted) once, there
            ppl = 0.0
        elif "evaluation_perplexity" in s:
            ppl = float(s["evaluation_perplexity"])
            out["zero-shot"] += float(s.get("evaluation_zero_shot", 0.0))
            out["decode speed"] += float(s.get("evaluation_speed", 0.0))
        elif c.zero_shot is None:
            ppl = float(s.get("evaluation", 0.0))
        else:  # old record: estimate the perplexity share from the method's plain cells
            plain = [float(o.seconds.get("evaluation", 0.0)) for o in r.all_cells
                     if o.method == c.method and o.zero_shot is None and o.seconds.get("evaluation")]
            ppl = sum(plain) / len(plain) if plain else 0.0
            out["zero-shot"] += max(float(s.get("evaluation", 0.0)) - ppl, 0.0)
        per_method[c.method] = per_method.get(c.method, 0.0) + ppl
    out["perplexity (pruned)"] = sum(per_method.values())
    conf = r.confirmation or {}
    out["confirmation windows"] = sum(float(e.get("seconds") or 0.0) for e in [conf.get("dense") or {},
                                                                               *conf.get("cells", [])]
                                      if e.get("role") != "added")
    out["random floor"] = sum(float((d.get("seconds") or {}).get("evaluation") or 0.0)
                              for d in (r.random_floor or {}).get("draws", []))
    runs = (r.sleb_check or {}).get("runs", [])[1:]  # the first is the study's own SLEB cell, counted above
    out["SLEB at a second token count"] = sum(float(x.get("search_seconds") or 0.0)
                                              + float((x.get("seconds") or {}).get("evaluation") or 0.0) for x in runs)
    axis = r.calibration_corpora or {}
    own = r.config.get("calibration")  # the study's own corpus reuses its pass
    out["calibration-corpus axis"] = sum(float(v or 0.0) for c, v in (axis.get("seconds") or {}).items() if c != own)
    out["healing grid"] = sum(float(e.get("evaluation_seconds") or 0.0) for e in (r.healing or {}).get("cells", []))
    timed = sum(out.values())
    out["other (notebook, figures, reports)"] = max(float(r.wall_time_s or 0.0) - timed, 0.0)
    out.update({f"perplexity: {m}": v for m, v in per_method.items()})
    return out


FLOOR_STAGES = ("perplexity (dense)", "perplexity (pruned)", "confirmation windows", "random floor")


def stage_floor_seconds(results: StudyResult) -> dict[str, float]:
    """The floor of each perplexity stage of one model's study, seconds: its FLOPs / the recorded matmul rate.

    FLOPs per :func:`lorp.evaluate.compute_floor.variant_flops`: the dense pass over the screening windows;
    every cell that computed its own perplexity (reused evaluations cost nothing), restarting from
    its first removed block where the dense states entering it were kept; each confirmation row on
    its windows (dense once, each set from its first removed block); each random draw. Rows ``lorp study --add``
    put beside the study are left out, as in :func:`stage_seconds`. Keys: the
    stages of :data:`FLOOR_STAGES` that ran. Empty for records written before the floor was kept
    (``perplexity_reuse["floor"]``).
    """
    r = results
    reuse = r.perplexity_reuse or {}
    floor = reuse.get("floor")
    if not floor:
        return {}
    per_block, head, rate = floor["block_flops"], float(floor["head_flops"]), float(floor["matmul_flops_per_s"])
    enabled, stored = bool(reuse.get("enabled")), set(reuse.get("stored_blocks") or [])
    screening = sum(int(v["windows"]) * int(v["window_tokens"]) for v in (r.evaluation or {}).values())

    def seconds(tokens: int, removed=(), restart: bool = enabled) -> float:
        return variant_flops(per_block, head, tokens, removed, restart) / rate

    out = {"perplexity (dense)": seconds(screening)}
    out["perplexity (pruned)"] = sum(
        seconds(screening, c.pruned, enabled and min(c.pruned) in stored) for c in r.all_cells
        if c.pruned and float((c.seconds or {}).get("evaluation_perplexity", 0.0)) > 0 and not c.evaluation_reused
        and not c.added)
    conf = r.confirmation or {}
    if conf.get("dense"):
        tokens = int(conf["windows"]) * int(conf["seq_len"]) * len(conf["dense"].get("perplexity") or {})
        out["confirmation windows"] = seconds(tokens) + sum(seconds(tokens, e["pruned"]) for e in conf.get("cells", [])
                                                            if e.get("role") != "added")
    draws = (r.random_floor or {}).get("draws", [])
    if draws:
        out["random floor"] = sum(seconds(screening, d["pruned"]) for d in draws)
    return out


def stage_markdown(studies: Mapping[str, StudyResult]) -> str:
    """Markdown table: seconds per stage (rows) for each model and in total (columns), each stage's share of the
    whole (per-method perplexity rows: their share, already inside "perplexity (pruned)") and, for the perplexity
    stages, the measured time over its floor (:func:`stage_floor_seconds`, summed over the models that recorded
    one; "–" where none is defined), then their sum (the time
    the numbers took to compute) and the wall time of the notebook run that wrote the report, which is much
    shorter when that run reused finished cells."""
    per = {name: stage_seconds(r) for name, r in studies.items()}
    floors = {name: stage_floor_seconds(r) for name, r in studies.items()}
    names = list(per)
    rows = list(STAGES) + sorted({k for v in per.values() for k in v if k.startswith("perplexity: ")})
    computed = [sum(v for k, v in per[n].items() if not k.startswith("perplexity: ")) for n in names]
    whole = sum(computed)
    lines = ["| stage | " + " | ".join(names) + " | total | share | × floor |", "|---|" + "---:|" * (len(names) + 3)]
    for stage in rows:
        vals = [per[n].get(stage, 0.0) for n in names]
        label = f"  {stage}" if stage.startswith("perplexity: ") else stage
        share = f"{100 * sum(vals) / whole:.0f} %" if whole else "–"
        with_floor = [n for n in names if floors[n].get(stage)]
        ratio = (f"{sum(per[n][stage] for n in with_floor) / sum(floors[n][stage] for n in with_floor):.2f}"
                 if with_floor else "–")
        lines.append(f"| {label} | " + " | ".join(f"{v:.0f}" for v in vals) + f" | {sum(vals):.0f} | {share} | {ratio} |")
    walls = [float(studies[n].wall_time_s or 0.0) for n in names]
    lines.append("| **to compute** (the stages above) | " + " | ".join(f"**{w:.0f}**" for w in computed)
                 + f" | **{whole:.0f}** | 100 % | |")
    lines.append("| wall time of the run that wrote this report (short when it reused finished cells) | "
                 + " | ".join(f"{w:.0f}" for w in walls)
                 + f" | {sum(walls):.0f} | | |")
    return "\n".join(lines) + "\n"
