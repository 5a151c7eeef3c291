"""Files shaped like the public XMC benchmarks, for scale tests of the readers and the evaluation.

The texts of LF-AmazonTitles-131K are not available offline; this writes files of the same shape (counts, labels per
query, title lengths) in both published forms, so the loaders can be measured at real size.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alc_hf.core.query_labels import RaggedIds


@dataclass(frozen=True)
class XMCShape:
    num_train: int
    num_test: int
    num_labels: int
    mean_labels_per_query: float


LF_AMAZONTITLES_131K = XMCShape(num_train=294_805, num_test=134_835, num_labels=131_073, mean_labels_per_query=2.29)


def _titles(rng: np.random.Generator, count: int, vocabulary: np.ndarray) -> list[str]:
    lengths = rng.integers(3, 12, size=count)
    words = vocabulary[rng.integers(0, vocabulary.size, size=int(lengths.sum()))]
    ends = np.cumsum(lengths)
    return [" ".join(words[end - length : end]) for end, length in zip(ends.tolist(), lengths.tolist(), strict=True)]


def _targets(rng: np.random.Generator, count: int, shape: XMCShape) -> RaggedIds:
    # 1 + Poisson(mean - 1) labels per query, drawn without repetition within a query.
    lengths = 1 + rng.poisson(shape.mean_labels_per_query - 1, size=count)
    rows = RaggedIds.from_lengths(lengths, rng.integers(0, shape.num_labels, size=int(lengths.sum())))
    offsets = rows.offsets
    # Rare repeats within a row are shifted to a neighbouring label, which keeps the counts exact.
    for row in np.flatnonzero(lengths > 1):
        labels = rows[row]
        if np.unique(labels).size < labels.size:
            rows.ids[offsets[row] : offsets[row + 1]] = (labels[0] + np.arange(labels.size)) % shape.num_labels
    return rows


def write_xmc_like(
    directory: str | Path,
    shape: XMCShape = LF_AMAZONTITLES_131K,
    forms: tuple[str, ...] = ("json", "raw"),
    seed: int = 0,
) -> Path:
    """Write a synthetic dataset of ``shape`` into ``directory`` in the JSON-lines form (``trn.json.gz``,
    ``tst.json.gz``, ``lbl.json.gz``) and/or the raw-text form (``trn_X.txt``, ``tst_X.txt``, ``Y.txt``,
    ``trn_X_Y.txt``, ``tst_X_Y.txt``). Deterministic for a seed."""
    unknown = set(forms) - {"json", "raw"}
    if unknown:
        raise ValueError(f"unknown forms {sorted(unknown)}; expected 'json' and/or 'raw'")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    syllables = np.array(["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "do", "gu", "xi", "be", "fo"])
    vocabulary = np.unique(
        np.char.add(
            np.char.add(rng.choice(syllables, 30_000), rng.choice(syllables, 30_000)), rng.choice(syllables, 30_000)
        )
    )
    labels = _titles(rng, shape.num_labels, vocabulary)
    splits = {
        "trn": (_titles(rng, shape.num_train, vocabulary), _targets(rng, shape.num_train, shape)),
        "tst": (_titles(rng, shape.num_test, vocabulary), _targets(rng, shape.num_test, shape)),
    }
    if "json" in forms:
        _write_json_lines(directory / "lbl.json.gz", labels, None)
        for split, (titles, targets) in splits.items():
            _write_json_lines(directory / f"{split}.json.gz", titles, targets)
    if "raw" in forms:
        (directory / "Y.txt").write_text("\n".join(labels) + "\n")
        for split, (titles, targets) in splits.items():
            (directory / f"{split}_X.txt").write_text("\n".join(titles) + "\n")
            rows = (" ".join(f"{label}:1.0" for label in targets[q].tolist()) for q in range(len(targets)))
            header = f"{len(targets)} {shape.num_labels}\n"
            (directory / f"{split}_X_Y.txt").write_text(header + "\n".join(rows) + "\n")
    return directory


def _write_json_lines(path: Path, titles: list[str], targets: RaggedIds | None) -> None:
    with gzip.open(path, "wt", compresslevel=1) as file:
        for index, title in enumerate(titles):
            record = {"uid": f"S{index:07d}", "title": title, "content": ""}
            if targets is not None:
                labels = targets[index].tolist()
                record["target_ind"] = labels
                record["target_rel"] = [1.0] * len(labels)
            file.write(json.dumps(record) + "\n")
