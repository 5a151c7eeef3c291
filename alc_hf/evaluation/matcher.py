"""Put the threshold to work: accept the top-1 of each new query automatically above the threshold, send the rest to
a person.

A :class:`Matcher` is built from a trained model folder: its bi-encoder, its pair head and verifier when the folder
has them, and the rule it decides by (:func:`accept_rule`): the threshold ``alc-hf certify`` certified for the
folder (``certifications.json``), else the one calibrated on the calibration split by the train program's report,
said plainly to be uncertified, else one given explicitly. Without any, it refuses rather than guess.

:meth:`Matcher.index` embeds the catalog once and keeps a faiss index of it — exact up to
:data:`EXACT_UP_TO` products, approximate (IVF) above, overridable — saved under a fingerprint of the model and the
catalog, so the next run reuses it and a changed catalog or model never meets a stale one. :meth:`Matcher.match`
decides a chunk of queries: top-k, the accept score of the top-1, accept or review; memory is bounded by the chunk.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit

from alc_hf.core.metrics import ScoreShift, score_shift
from alc_hf.core.retrieval import KINDS, LabelIndex
from alc_hf.evaluation.accept import pair_head_logits
from alc_hf.evaluation.certification_sheet import CERTIFICATIONS_FILE, read_certifications

__all__ = [
    "EXACT_UP_TO",
    "MATCH_SCORES",
    "AcceptRule",
    "Matcher",
    "MatchResult",
    "accept_rule",
    "load_backend",
    "model_fingerprint",
]

# The accept scores a Matcher computes per query. The combined scores are regressions fitted when a report or a
# certification is made, and their coefficients are not saved with the model yet: they cannot be applied here.
MATCH_SCORES = ("cosine", "pair_head", "verifier")
# Catalogs up to this size are searched exactly (a flat index); larger ones with an IVF index of these options: at
# 1,000,000 products (benchmarks/match_speed.py scale) it agreed with exact search on every query's top-1, searching
# 2.7x faster, built in 24 s.
EXACT_UP_TO = 200_000
AUTO_IVF_OPTIONS = {"nlist": 1024, "nprobe": 32}
# Files of a model folder that are not the encoder: they change without changing an embedding.
_NOT_THE_ENCODER = {"README.md", CERTIFICATIONS_FILE}
_NOT_THE_ENCODER_FOLDERS = {"pair_head", "verifier", "eval"}


@dataclass(frozen=True)
class AcceptRule:
    """What decides acceptance: the top-1 is accepted when its ``accept_score`` is at least ``threshold``.

    ``source`` says where the threshold comes from (``certified``, ``calibrated``: on a calibration split, not
    certified, or ``given``); ``precision_lower_bound`` is the precision certified there (the target, at the
    certificate's ``confidence``; the exact precision for a census, whose confidence is None; None when not
    certified);
    ``reference_scores`` are quantiles of the top-1 scores of the traffic it was certified on, the distribution
    new traffic is compared with (None when there is none)."""

    accept_score: str
    threshold: float
    source: str
    target_precision: float | None = None
    precision_lower_bound: float | None = None
    confidence: float | None = None
    traffic: str | None = None
    reference_scores: np.ndarray | None = None
    backend: str = "torch"

    def describe(self) -> str:
        where = f" on {self.traffic}" if self.traffic else ""
        if self.source == "certified":
            return (
                f"accept when {self.accept_score} >= {self.threshold!r}, certified{where}: precision at least "
                f"{self.precision_lower_bound:.4g}"
                + (
                    f" with probability {self.confidence:.0%}"
                    if self.confidence is not None
                    else " (every prediction above it labelled)"
                )
            )
        if self.source == "calibrated":
            return (
                f"accept when {self.accept_score} >= {self.threshold:.6f}, calibrated for precision "
                f"{self.target_precision:g}{where} — NOT certified: run `alc-hf certify` on your traffic to know the "
                "precision it gives there"
            )
        return f"accept when {self.accept_score} >= {self.threshold:.6f} (given on the command line, not certified)"


def _certified_rules(model_dir: Path) -> list[tuple[dict, AcceptRule | None]]:
    """Each certification of the folder, with the rule it gives (None when it certified nothing)."""
    rules = []
    for record in read_certifications(model_dir):
        figures = record["certification"]
        rule = None
        if figures["threshold"] is not None:
            reference = record.get("reference_scores")
            census = bool(figures.get("census"))
            rule = AcceptRule(
                accept_score=record["accept_score"],
                threshold=float(figures["threshold"]),
                source="certified",
                target_precision=record["target_precision"],
                precision_lower_bound=figures["labelled_precision"] if census else record["target_precision"],
                confidence=None if census else 1 - record["delta"],
                traffic=record["traffic"],
                reference_scores=None if reference is None else np.asarray(reference, dtype=np.float64),
                backend=record.get("backend", "torch"),
            )
        rules.append((record, rule))
    return rules


def _calibrated_rules(model_dir: Path) -> list[AcceptRule]:
    """The thresholds the train program's report calibrated (``coverage_after*.json``), for each accept score."""
    rules = []
    for path in sorted(model_dir.glob("coverage_after*.json")):
        report = json.loads(path.read_text(encoding="utf-8"))
        for result in report["coverage_at"].get("1", []):
            if result["threshold"] is not None:
                rules.append(
                    AcceptRule(
                        accept_score=report["accept_score"],
                        threshold=float(result["threshold"]),
                        source="calibrated",
                        target_precision=result["target_precision"],
                        traffic="the calibration split of the training data",
                    )
                )
    return rules


def accept_rule(
    model_dir: str | Path,
    accept_score: str | None = None,
    target_precision: float | None = None,
    threshold: float | None = None,
    backend: str = "torch",
) -> AcceptRule:
    """The rule a model folder decides by: ``threshold`` when given (with ``accept_score``, default cosine); else
    the folder's certification for ``accept_score`` and ``target_precision`` (each narrowing the choice when
    given); else the threshold its report calibrated for them (default: cosine at 0.9), marked uncertified.

    Raises:
        ValueError: no threshold at all, several certifications left to choose from (listed, with the options that
            choose), a certification that certified nothing or was made with another ``backend`` (a threshold holds
            for the scores it was certified on), or an accept score a Matcher cannot compute.
    """
    if accept_score is not None and accept_score not in MATCH_SCORES:
        raise ValueError(
            f"accept score {accept_score!r} cannot be applied to new traffic: expected one of {', '.join(MATCH_SCORES)}"
            " (the combined scores' regressions are not saved with the model)"
        )
    if threshold is not None:
        return AcceptRule(accept_score or "cosine", float(threshold), "given", backend=backend)
    model_dir = Path(model_dir)

    def wanted(score: str, target: float | None) -> bool:
        return (accept_score is None or score == accept_score) and (
            target_precision is None or target is not None and math.isclose(target, target_precision)
        )

    certified = [
        (record, rule)
        for record, rule in _certified_rules(model_dir)
        if wanted(record["accept_score"], record["target_precision"])
    ]
    usable = [rule for _, rule in certified if rule is not None and rule.accept_score in MATCH_SCORES]
    other_backend = [rule for rule in usable if rule.backend != backend]
    usable = [rule for rule in usable if rule.backend == backend]
    if other_backend and not usable:
        made = ", ".join(sorted({rule.backend for rule in other_backend}))
        raise ValueError(
            f"{model_dir / CERTIFICATIONS_FILE}: the threshold was certified on scores computed with --backend "
            f"{made}, and this run computes them with --backend {backend}: a threshold holds for the scores it was "
            f"certified on. Pass --backend {made}, or certify again with --backend {backend}"
        )
    if len(usable) == 1:
        return usable[0]
    if len(usable) > 1:
        listed = "; ".join(f"{r.accept_score} at {r.target_precision:g} on {r.traffic}" for r in usable)
        raise ValueError(
            f"{model_dir / CERTIFICATIONS_FILE} holds {len(usable)} certifications that fit ({listed}): choose one "
            "with --accept_score and --target_precision"
        )
    if certified:
        record = certified[-1][0]
        raise ValueError(
            f"{model_dir / CERTIFICATIONS_FILE}: the certification of {record['accept_score']} at "
            f"{record['target_precision']:g} on {record['traffic']} certified no threshold (accept nothing), or "
            f"its accept score cannot be applied here: label more with `alc-hf certify`, or pass --threshold"
        )
    calibrated = [
        rule
        for rule in _calibrated_rules(model_dir)
        if rule.accept_score == (accept_score or "cosine")
        and math.isclose(rule.target_precision, target_precision if target_precision is not None else 0.9)
    ]
    if calibrated:
        return calibrated[0]
    raise ValueError(
        f"{model_dir} holds no threshold for {accept_score or 'cosine'} at precision {target_precision or 0.9:g}: "
        "no certification (`alc-hf certify`) and no report of the train program (coverage_after.json); certify one, "
        "or give one with --threshold"
    )


def model_fingerprint(model_path: str | Path) -> str:
    """A hash of the files that make the encoder's embeddings (weights, configuration, tokenizer), not of the card,
    certifications, pair head or verifier beside them: an index built with another encoder never matches it."""
    folder = Path(model_path)
    digest = hashlib.sha256()
    if not folder.is_dir():
        digest.update(str(model_path).encode())
        return digest.hexdigest()
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if not path.is_file() or relative.parts[0] in _NOT_THE_ENCODER_FOLDERS or relative.name in _NOT_THE_ENCODER:
            continue
        if relative.name.startswith("coverage_"):
            continue
        digest.update(str(relative).encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def load_backend(model: Any, fingerprint: str, backend: str, cache_dir: str | Path) -> Any:
    """``model`` itself for the torch backend, else the same encoder on onnxruntime
    (:class:`alc_hf.models.OnnxEncoder`), exported into ``cache_dir`` once per encoder (its
    :func:`model_fingerprint`) and backend."""
    from alc_hf.models.onnx_encoder import OnnxEncoder, check_backend

    if check_backend(backend) == "torch":
        return model
    return OnnxEncoder.from_sentence_transformer(model, backend, cache_dir, fingerprint)


def catalog_fingerprint(ids: Sequence[str], texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for record_id, text in zip(ids, texts, strict=True):
        digest.update(record_id.encode() + b"\0" + text.encode() + b"\1")
    return digest.hexdigest()


@dataclass(frozen=True)
class MatchResult:
    """The decisions for a chunk of queries: ``ids`` / ``scores`` ``[n, k]`` the top-k catalog positions and their
    cosines (-1 / -inf where the catalog has fewer); ``accept_scores`` ``[n]`` the accept score of each top-1
    (-inf for none); ``accepted`` ``[n]`` whether it is accepted automatically."""

    ids: np.ndarray
    scores: np.ndarray
    accept_scores: np.ndarray
    accepted: np.ndarray


class Matcher:
    """Decides, for each new query, accept its top-1 or send it to a person (see the module docstring).

    Args:
        model: the bi-encoder (a SentenceTransformer).
        rule: what decides acceptance (:func:`accept_rule`).
        pair_head: the ALC pair head, needed when the rule's accept score is ``pair_head``.
        verifier: the cross-encoder, needed when it is ``verifier``.
        fingerprint: :func:`model_fingerprint` of the encoder (the saved index is keyed by it).
        top_k: candidates returned per query (what a person chooses from on review).
        batch_size: texts per batch when embedding.
    """

    def __init__(
        self,
        model: Any,
        rule: AcceptRule,
        pair_head: Any = None,
        verifier: Any = None,
        fingerprint: str = "",
        top_k: int = 5,
        batch_size: int = 64,
    ) -> None:
        if rule.accept_score not in MATCH_SCORES:
            raise ValueError(f"accept score {rule.accept_score!r}: expected one of {', '.join(MATCH_SCORES)}")
        if rule.accept_score == "pair_head" and pair_head is None:
            raise ValueError("the rule accepts by the pair head, and the model folder holds none (pair_head/)")
        if rule.accept_score == "verifier" and verifier is None:
            raise ValueError("the rule accepts by the verifier, and the model folder holds none (verifier/)")
        if top_k < 1 or batch_size < 1:
            raise ValueError(f"top_k and batch_size must be at least 1, got {top_k} and {batch_size}")
        self.model, self.rule, self.pair_head, self.verifier = model, rule, pair_head, verifier
        self.fingerprint, self.top_k, self.batch_size = fingerprint, top_k, batch_size
        # The model's name and local folder (set by from_model_dir): an audit sheet certifies for them.
        self.model_name, self.model_dir = "the model", None
        self.catalog_ids: list[str] = []
        self.catalog_texts: list[str] = []
        self._index: LabelIndex | None = None

    @classmethod
    def from_model_dir(
        cls,
        model_dir: str | Path,
        accept_score: str | None = None,
        target_precision: float | None = None,
        threshold: float | None = None,
        device: str | None = None,
        top_k: int = 5,
        batch_size: int = 64,
        verifier_path: str | Path | None = None,
        backend: str = "torch",
        cache_dir: str | Path = "alc_hf_index",
    ) -> Matcher:
        """The Matcher of a trained model folder (see :func:`accept_rule` for the threshold it uses); the verifier
        is ``verifier_path`` or the folder's ``verifier/``; the bi-encoder runs on ``backend``
        (:func:`load_backend`, its export kept in ``cache_dir``)."""
        from alc_hf.losses.pair_head import saved_pair_head
        from alc_hf.models import load_encoder, resolve_model_path
        from alc_hf.models.verifier import load_verifier

        rule = accept_rule(model_dir, accept_score, target_precision, threshold, backend)
        pair_head = saved_pair_head(model_dir) if rule.accept_score == "pair_head" else None
        verifier = None
        if rule.accept_score == "verifier":
            verifier = load_verifier(verifier_path or Path(model_dir) / "verifier", device=device)
        encoder = model_fingerprint(resolve_model_path(str(model_dir)))
        model = load_backend(load_encoder(str(model_dir), device=device), encoder, backend, cache_dir)
        matcher = cls(model, rule, pair_head, verifier, f"{encoder}:{backend}", top_k, batch_size)
        matcher.model_name = str(model_dir)
        matcher.model_dir = str(Path(model_dir).resolve()) if Path(model_dir).is_dir() else None
        return matcher

    @property
    def index_kind(self) -> str | None:
        return None if self._index is None else self._index.kind

    def index(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        cache_dir: str | Path | None = None,
        kind: str = "auto",
        show_progress_bar: bool = False,
    ) -> bool:
        """Embed the catalog (``ids`` and ``texts``, one product each) and index it; with ``cache_dir``, reuse the
        index saved there for the same model, catalog and kind, or save the new one. ``kind``: ``"auto"`` (exact
        up to :data:`EXACT_UP_TO` products, else IVF), ``"flat"``, ``"hnsw"`` or ``"ivf"``. Returns whether a saved
        index was reused."""
        from alc_hf.models import embed_texts

        if len(ids) != len(texts) or not ids:
            raise ValueError(f"a catalog needs as many ids as texts, at least one: got {len(ids)} and {len(texts)}")
        options = {}
        if kind == "auto":
            kind = "flat" if len(ids) <= EXACT_UP_TO else "ivf"
            options = AUTO_IVF_OPTIONS if kind == "ivf" else {}
        if kind not in KINDS:
            raise ValueError(f"index kind {kind!r}: expected auto or one of {', '.join(KINDS)}")
        self.catalog_ids, self.catalog_texts = list(ids), list(texts)
        settings = f"{kind}:{sorted(options.items())}"
        key = hashlib.sha256(f"{self.fingerprint}:{catalog_fingerprint(ids, texts)}:{settings}".encode()).hexdigest()
        saved = None if cache_dir is None else Path(cache_dir) / key[:32]
        if saved is not None and saved.is_dir():
            self._index = LabelIndex.load(saved)
            return True
        if show_progress_bar:
            print(f"Embedding {len(texts):,} catalog products ...", flush=True)
        embeddings = embed_texts(self.model.encode_document, list(texts), self.batch_size, show_progress_bar)
        self._index = LabelIndex(embeddings, kind=kind, **options)
        if saved is not None:
            # Written beside its place and renamed into it: a run killed while saving leaves no half index.
            saved.parent.mkdir(parents=True, exist_ok=True)
            partial = Path(tempfile.mkdtemp(dir=saved.parent, prefix=f".{saved.name}."))
            try:
                self._index.save(partial)
                os.replace(partial, saved)
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
        return False

    def match(self, texts: Sequence[str]) -> MatchResult:
        """The decisions for the queries ``texts`` (a chunk: memory grows with its size)."""
        from alc_hf.models import embed_texts
        from alc_hf.models.verifier import verifier_probabilities

        if self._index is None:
            raise ValueError("no catalog is indexed: call index(ids, texts) first")
        queries = embed_texts(self.model.encode_query, list(texts), self.batch_size)
        top = self._index.search(queries, min(self.top_k, self._index.num_labels))
        has_top = top.ids[:, 0] >= 0
        if self.rule.accept_score == "cosine":
            accept_scores = top.scores[:, 0].astype(np.float64)
        elif self.rule.accept_score == "pair_head":
            logits = pair_head_logits(self.pair_head, queries, self._index.vectors, top.ids[:, :1])[:, 0]
            accept_scores = np.where(has_top, expit(logits), -np.inf)
        else:
            rows = np.flatnonzero(has_top)
            accept_scores = np.full(len(texts), -np.inf)
            accept_scores[rows] = verifier_probabilities(
                self.verifier,
                [texts[row] for row in rows],
                [self.catalog_texts[top.ids[row, 0]] for row in rows],
                batch_size=self.batch_size,
            )
        accepted = has_top & (accept_scores >= self.rule.threshold)
        return MatchResult(top.ids, top.scores, accept_scores, accepted)

    def shift(self, traffic_scores: np.ndarray) -> ScoreShift | None:
        """How this traffic's top-1 accept scores compare with those of the traffic the threshold was certified
        on (None without a reference): a flagged shift means re-certify before trusting the threshold."""
        if self.rule.reference_scores is None or len(traffic_scores) == 0:
            return None
        return score_shift(self.rule.reference_scores, np.asarray(traffic_scores), [self.rule.threshold])
