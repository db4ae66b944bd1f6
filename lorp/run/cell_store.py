"""Where finished cells live: one checked JSON file per cell, written atomically, and the run's counts."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..store.atomic import write_json
from ..store.cache import notice, read_checked_json, write_checked_json
from .records import CellFailure, CellResult, CellSpec, Evaluation


# -- the cell store -----------------------------------------------------------------------------------------------
class CellStore:
    """One JSON file per finished cell (``cells/<name>.json``) and per evaluation (``evaluations/<key>.json``).

    Files are written with :func:`lorp.store.cache.write_checked_json` (uniquely named
    temporary file + ``os.replace``, a checksum of the content inside): a cell is
    present whole or not at all, so a killed worker or driver resumes with no lost
    and no duplicated cell, and a damaged or edited file is recomputed, never used.

    Args:
        folder: the sweep folder.
        identity: hash of the shared settings; cells of other settings are ignored.
        codes: per method, the code strings its cells depend on (:func:`lorp.run.fingerprint.cell_code`);
            a stored cell with other code is recomputed, and the first such cell of each changed
            component says so on stderr. ``None``: cells are read whatever code computed them
            (reading a finished sweep for its report).
        sources: ``{"<kind>:<name>": plugin source}`` for those notices (e.g. ``local file plugins/x.py``).
        evaluation_code: the code of the registered evaluation corpora, part of every evaluation's key.
        healing: what every healed evaluation's key holds beside the healer: ``{"codes": {healer: code
            string}, "calibration": {corpus, samples, seq_len}}`` (:meth:`healing_key`); a healed cell also
            carries its healer's code.
    """

    def __init__(self, folder: str | Path, identity: str, codes: Mapping[str, Mapping[str, str]] | None = None,
                 sources: Mapping[str, str] | None = None, evaluation_code: Mapping[str, str] | None = None,
                 healing: Mapping[str, Any] | None = None):
        self.folder, self.identity = Path(folder), identity
        self.healing = dict(healing or {})
        self.evaluation_code = dict(evaluation_code or {})
        self.codes = {m: dict(c) for m, c in codes.items()} if codes is not None else None
        self.sources = dict(sources or {})
        self._told: set[str] = set()

    def cell_path(self, spec: CellSpec) -> Path:
        return self.folder / "cells" / f"{spec.name}.json"

    def load(self, spec: CellSpec) -> CellResult | None:
        """The finished cell ``spec`` (same identity and evaluation settings), or ``None``.

        A cell file that is damaged or edited (its checksum does not match,
        :func:`lorp.store.cache.read_checked_json`) gets a notice and is recomputed.
        """
        cell = _read_cell(self.cell_path(spec))
        if cell is None or cell.identity != self.identity or cell.spec != spec:
            return None
        expected = self.code_of(spec.method, spec.healer)
        if expected is not None and cell.code != expected:
            self._tell_changed(spec.method, cell.code, expected)
            return None
        return cell

    def code_of(self, method: str, healer: str = "none") -> dict[str, str] | None:
        """The code strings cells of ``method`` (healed by ``healer``) must carry, ``None`` when this store does
        not check code."""
        if self.codes is None:
            return None
        code = dict(self.codes.get(method, {}))
        if healer != "none":
            code[f"healer:{healer}"] = self.healing.get("codes", {}).get(healer, "")
        return code

    def healing_key(self, spec: CellSpec) -> dict[str, Any] | None:
        """What a healed evaluation of ``spec`` is keyed by beside the removed set and the evaluation settings:
        the healer, its settings, its code and the calibration draw (corpus, samples, length, the cell's
        seed); ``None`` for an unhealed cell (:func:`lorp.run.worker.evaluation_key`)."""
        if not spec.healed:
            return None
        return {"healer": spec.healer, "settings": {}, "code": self.healing.get("codes", {}).get(spec.healer, ""),
                "calibration": {**self.healing.get("calibration", {}), "seed": spec.seed}}

    def _tell_changed(self, method: str, stored: Mapping[str, str], expected: Mapping[str, str]) -> None:
        """One notice per changed component (or per method, for cells from before code was recorded)."""
        changed = sorted(k for k in expected if stored.get(k) != expected[k]) if stored else []
        for key in changed or [f"cells of {method}"]:
            if key in self._told:
                continue
            self._told.add(key)
            what = f"{self.sources[key]} ({key})" if key in self.sources else key
            notice(f"{what} changed since the cached cells: recomputing its cells"
                   if changed else f"{what} were computed before lorp recorded plugin code: recomputing them")

    def stored(self) -> Iterator[tuple[Path, CellResult]]:
        """Every readable cell file of this store's identity, in file-name order, with its cell (any spec, any code).

        Files that are damaged, edited or from another lorp version are skipped.
        """
        for f in sorted((self.folder / "cells").glob("*.json")):
            cell = _read_cell(f)
            if cell is not None and cell.identity == self.identity:
                yield f, cell

    def save(self, cell: CellResult) -> Path:
        """Write ``cells/<name>.json`` atomically, with a checksum of its content."""
        return write_checked_json(self.cell_path(cell.spec), cell.to_json())

    def load_evaluation(self, key: str) -> Evaluation | None:
        """The stored evaluation ``key``, or ``None`` (missing, damaged or from another lorp version)."""
        data = read_checked_json(self.folder / "evaluations" / f"{key}.json", "sweep evaluation")
        if data is None:
            return None
        try:
            return Evaluation.from_json(data)
        except (ConfigError, KeyError, TypeError, ValueError):
            return None

    def save_evaluation(self, key: str, ev: Evaluation) -> Path:
        """Write ``evaluations/<key>.json`` atomically, with a checksum of its content."""
        return write_checked_json(self.folder / "evaluations" / f"{key}.json", ev.to_json())


def _read_cell(path: Path) -> CellResult | None:
    """The cell in ``path``; ``None`` when missing, damaged or edited (with a notice), or from another lorp version."""
    data = read_checked_json(path, "sweep cell")
    if data is None:
        return None
    try:
        return CellResult.from_json(data)
    except (ConfigError, KeyError, TypeError, ValueError, AttributeError):
        return None  # written by another lorp version: recomputed


@dataclass
class RunStats:
    """What one orchestration did.

    Attributes:
        cells_written: cells computed and stored in this run.
        evaluations_computed: evaluations run (one per distinct removed set and settings).
        evaluations_reused: cells whose evaluation came from another cell with the same removed set.
        failures: cells that raised.
        attribution_error: ``"<ExceptionType>: <message>"`` when the single-block removal profile raised
            (the cells still land; a rerun retries it), else ``None``.
        seconds_to_first_cell: from the start of the orchestration to the first stored cell.
        seconds: total.
    """

    cells_written: int = 0
    evaluations_computed: int = 0
    evaluations_reused: int = 0
    failures: list[CellFailure] = field(default_factory=list)
    attribution_error: str | None = None
    seconds_to_first_cell: float | None = None
    seconds: float = 0.0


def write_failures(folder: Path, failures: Sequence[CellFailure]) -> Path | None:
    """``failures.json``: every failed cell's spec, stage, error and traceback (removed when none failed)."""
    path = Path(folder) / "failures.json"
    if not failures:
        path.unlink(missing_ok=True)
        return None
    return write_json(path, {"schema": "lorp.cell_failures", "version": 1,
                             "failures": [{"spec": f.spec.to_json(), "stage": f.stage, "error": f.error,
                                           "traceback": f.traceback} for f in failures]})


__all__ = ["CellStore", "RunStats", "write_failures"]
