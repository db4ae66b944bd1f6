"""Are two report folders the same study? Markdown, JSON and CSV compared, apart from provenance and timings.

    python -m benchmarks.compare_reports BEFORE AFTER

For a change that must not change a number (a refactor, a speed-up at float32): run
``lorp study --preset quick --reports BEFORE`` with an empty ``LORP_CACHE_DIR`` before
it and the same into AFTER after it, then compare. What may differ, and nothing else:

- JSON: fields named as provenance or wall-clock measurement (:data:`VOLATILE_KEY`:
  commits, seconds, times, decode tokens/s, the cache location of the model);
- Markdown and CSV: 40-hex commits, the ``Written … UTC`` stamp and the ``--reports``
  folder of the index, ``(N s when computed)``, and every number in the files that
  report only wall-clock measurements (:data:`TIMING_FILES`).

Prints each difference that is not one of these, then ``identical: n of m files``; the
exit status is 1 when a difference remains, or a file is in one folder only.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from pathlib import Path
from typing import Any

import click

#: JSON keys whose values are provenance or wall-clock measurements: they differ between any two runs.
VOLATILE_KEY = re.compile(r"seconds|_s$|_s_runs$|commit|^location$|^tokens_per_s|^written|^when$|_at$|^code_hash$")
#: Report files that hold only wall-clock measurements (seconds, tokens per second) besides their labels.
TIMING_FILES = frozenset({"time.md", "speed.md"})
SUFFIXES = (".md", ".json", ".csv")
_SHA = re.compile(r"\b[0-9a-f]{40}(-dirty)?\b")
_NUMBER = re.compile(r"\d[\d,]*(\.\d+)?")


def json_differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Paths where two parsed JSON values differ, skipping keys that match :data:`VOLATILE_KEY`.

    Args:
        a, b: parsed JSON (dicts, lists, scalars).
        path: where ``a`` and ``b`` sit, for the messages.
    Returns:
        ``"path: a -> b"`` per difference, in key order; an empty list when they agree.
    """
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            if VOLATILE_KEY.search(str(key)):
                continue
            out += json_differences(a.get(key, "<missing>"), b.get(key, "<missing>"), f"{path}.{key}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in json_differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path or '.'}: {str(a)[:80]!r} -> {str(b)[:80]!r}"]


def masked_lines(text: str, name: str, folder: Path) -> list[str]:
    """The lines of a Markdown or CSV report with provenance (and, in :data:`TIMING_FILES`, numbers) masked."""
    text = _SHA.sub("<commit>", text).replace(str(folder), "<reports>")
    text = re.sub(r"code hash `[^`]*`", "code hash <hash>", text)
    text = re.sub(r"Written \d{4}-\d\d-\d\d \d\d:\d\d UTC", "Written <when>", text)
    text = re.sub(r"\(\d+ s when computed\)", "(<n> s when computed)", text)
    if name in TIMING_FILES:
        text = _NUMBER.sub("<n>", text)
    return text.splitlines()


def compare(before: Path, after: Path) -> tuple[list[str], int, int]:
    """Compare every Markdown, JSON and CSV file under two report folders.

    Returns:
        ``(differences, identical, total)``: one message per remaining difference (a file in
        one folder only, a JSON path, a changed line), how many files agree, how many were read.
    """
    files = sorted({p.relative_to(root) for root in (before, after) for p in root.rglob("*")
                    if p.suffix in SUFFIXES and p.is_file()})
    out, same = [], 0
    for rel in files:
        a, b = before / rel, after / rel
        if not (a.is_file() and b.is_file()):
            out.append(f"{rel}: only in {'before' if a.is_file() else 'after'}")
            continue
        if rel.suffix == ".json":
            diffs = json_differences(json.loads(a.read_text()), json.loads(b.read_text()))
        else:
            la, lb = masked_lines(a.read_text(), rel.name, before), masked_lines(b.read_text(), rel.name, after)
            diffs = [line for line in difflib.unified_diff(la, lb, lineterm="", n=0)
                     if line[:1] in "+-" and line[:3] not in ("+++", "---")]
        if diffs:
            out += [f"{rel}: {d}" for d in diffs]
        else:
            same += 1
    return out, same, len(files)


@click.command()
@click.argument("before", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("after", type=click.Path(exists=True, file_okay=False, path_type=Path))
def main(before: Path, after: Path) -> None:
    """Compare two report folders apart from provenance and timings; exit 1 if anything else differs."""
    differences, same, total = compare(before, after)
    for line in differences:
        click.echo(line)
    click.echo(f"identical apart from provenance and timings: {same} of {total} files")
    sys.exit(1 if differences else 0)


if __name__ == "__main__":
    main()
