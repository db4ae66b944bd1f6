"""``reports/index.md`` and ``index.html``: the answer first, then one figure, then the links, from one outline."""

from __future__ import annotations

import html
import json
import re
from datetime import datetime, timezone
from pathlib import Path

from ..paths import REPO_ROOT
from ..run.record_schema import STUDY_SCHEMA, schema_of
from ..run.study_records import StudyResult
from ..store.atomic import write_text
from .ablation import load_ablations
from .added_answer import added_lines
from .answer import answer_lines


def _inline_html(markdown: str) -> str:
    """One Markdown line as HTML: escaped, with ``**bold**``, ``code`` and ``[text](link)`` spans (all the
    outline's lines use)."""
    text = html.escape(markdown, quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    text = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r"<a href='\2'>\1</a>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


#: The index figure's alternative text.
FIGURE = "LoRP's perplexity over the best baseline's, per model and budget, with 95 % intervals"
#: The line under the answer.
ABOUT = "Locality-Aware Redundancy Pruning (arXiv 2605.27786) and its baselines on real pretrained models."
COLUMNS = ("model", "architecture", "blocks", "RLS", "K", "preset", "report")


def index_outline(root: str | Path, *, preset: str = "", default_root: bool = True, added: list[str] | None = None
                  ) -> dict:
    """What the index says, once, for both renderings: ``{"answer", "figure", "summary", "rows", "footer"}``.

    ``answer``: :func:`lorp.study.answer.answer_lines` over the stored ``results.json`` (and ``ablation.json``)
    under ``root``: does LoRP beat its baselines, why not, how sure, on exactly which checkpoints; after
    ``lorp study --add`` (``added``), the added methods' answer first (:func:`lorp.study.added_answer.added_lines`). ``figure``:
    the summary's ``verdict.png`` exists; ``summary``: a Markdown line linking the summary's pages, or ``None``;
    ``rows``: per model, its :data:`COLUMNS` cells (the last one Markdown links); ``footer``: when written and
    how to rerun.
    """
    root = Path(root)
    rows, studies = [], {}
    for res in sorted(root.glob("*/results.json")):
        data = json.loads(res.read_text())
        if schema_of(data) != STUDY_SCHEMA:
            continue
        r = StudyResult.from_json(data)
        folder = res.parent.name
        studies[folder] = r
        links = " · ".join(f"[{text}]({folder}/{target})" for text, target in (
            ("HTML", "study.html"), ("notebook", "study.ipynb"), ("perplexity", "perplexity.md"),
            ("ablations", "ablation.md"), ("our selector", "selector.md"), ("results.json", "results.json")))
        rows.append([folder, r.model.get("model_type", ""), str(r.num_blocks), f"{r.rls:.3f}", str(r.k),
                     r.parameters.get("preset", ""), links])
    summary = None
    if (root / "summary" / "summary.html").is_file():
        summary = ("**[Summary across models](summary/summary.html)** ([notebook](summary/summary.ipynb), "
                   "[verdict](summary/verdict.md), [winners](summary/winners.md), [why LoRP loses](summary/why.md), "
                   "[ablations and our selector](summary/ablation.md), [RLS](summary/rls.md), "
                   "[time per stage](summary/time.md))")
    rerun = f"`lorp study --preset {preset or 'default'}" + ("" if default_root else f" --reports {root}") + "`"
    if preset in ("", "default") and default_root:
        rerun = f"`make study` (or {rerun})"
    if added:
        where = root.resolve()
        where = where.relative_to(REPO_ROOT).as_posix() if where.is_relative_to(REPO_ROOT) else where
        rerun = f"`lorp study --add {','.join(added)} --reports {where}`"
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return {"answer": [*added_lines(studies), *answer_lines(studies, load_ablations(root, studies))],
            "title": f"LoRP study reports, with {', '.join(added)} added" if added else "LoRP study reports",
            "figure": (root / "summary" / "verdict.png").is_file(), "summary": summary, "rows": rows,
            "footer": f"Written {stamp}. Rerun with {rerun}; finished work is reused."}


def index_markdown(outline: dict) -> str:
    """``index.md`` from :func:`index_outline`."""
    md = [f"# {outline.get('title', 'LoRP study reports')}", "", *(f"- {line}" for line in outline["answer"]), ""]
    if outline["figure"]:
        md += [f"![{FIGURE}](summary/verdict.png)", ""]
    md += [ABOUT, ""]
    if outline["summary"]:
        md += [outline["summary"], ""]
    md += ["| " + " | ".join(COLUMNS) + " |", "|---|---|---:|---:|---:|---|---|"]
    md += ["| " + " | ".join(row) + " |" for row in outline["rows"]]
    md += ["", outline["footer"]]
    return "\n".join(md) + "\n"


def index_html(outline: dict) -> str:
    """``index.html`` from :func:`index_outline`: the same lines, links and table."""
    title = html.escape(outline.get("title", "LoRP study reports"))
    body = [f"<!doctype html><meta charset='utf-8'><title>{title}</title>",
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:.3em .6em}</style>", f"<h1>{title}</h1>"]
    if outline["answer"]:
        body.append("<ul>" + "".join(f"<li>{_inline_html(line)}</li>" for line in outline["answer"]) + "</ul>")
    if outline["figure"]:
        body.append(f"<p><img src='summary/verdict.png' alt=\"{html.escape(FIGURE)}\" style='max-width:100%'></p>")
    body.append(f"<p>{_inline_html(ABOUT)}</p>")
    if outline["summary"]:
        body.append(f"<p>{_inline_html(outline['summary'])}</p>")
    body.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in COLUMNS) + "</tr>")
    body += ["<tr>" + "".join(f"<td>{_inline_html(cell)}</td>" for cell in row) + "</tr>" for row in outline["rows"]]
    body += ["</table>", f"<p>{_inline_html(outline['footer'])}</p>"]
    return "\n".join(body) + "\n"


def write_index(root: str | Path, *, preset: str = "", default_root: bool = True, added: list[str] | None = None
                ) -> Path:
    """``index.md`` and ``index.html`` under ``root``, both rendered from one :func:`index_outline`; returns the
    HTML file's path."""
    outline = index_outline(root, preset=preset, default_root=default_root, added=added)
    write_text(Path(root) / "index.md", index_markdown(outline))
    return write_text(Path(root) / "index.html", index_html(outline))


__all__ = ["index_html", "index_markdown", "index_outline", "write_index"]
