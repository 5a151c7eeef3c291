"""The decisions of a :class:`~alc_hf.evaluation.matcher.Matcher` on a file of new queries, written as a person and a
downstream system read them: per query the top-1 product, its accept score, ``accept`` or ``review``, and for
review rows the top-k candidates a person chooses from; a summary; and, when asked, an audit sheet of accepted
decisions that ``alc-hf certify --labels`` reads.

The output is written to a hidden file beside it and renamed into place once complete: a run that fails (a bad
query row, a full disk) leaves no output file that looks finished. Queries are read and decided chunk by chunk, so
memory is bounded by the chunk, whatever the file's size."""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alc_hf.core.files import write_atomically
from alc_hf.data.records import RecordChunk, read_record_chunks
from alc_hf.evaluation.certification_sheet import CertificationPlan, plan_path, write_sheet
from alc_hf.evaluation.matcher import Matcher, MatchResult

__all__ = ["DECISION_COLUMNS", "DECISION_SUFFIXES", "MatchSummary", "match_file"]

DECISION_COLUMNS = ("query_id", "query", "top1_id", "top1_text", "accept_score", "decision", "candidates")
DECISION_SUFFIXES = (".csv", ".jsonl", ".parquet")
# Top-1 scores kept for the shift check: a uniform sample of the traffic, bounded whatever its size.
_SHIFT_SAMPLE = 100_000


@dataclass
class MatchSummary:
    """What a run of :func:`match_file` decided, for the printed summary and ``<output>.summary.json``."""

    queries: int
    accepted: int
    seconds: float
    rule: str
    source: str
    precision_lower_bound: float | None
    index: str
    shift: str | None
    shift_warning: bool
    audit_sheet: str | None

    @property
    def accepted_share(self) -> float:
        return self.accepted / self.queries if self.queries else 0.0

    @property
    def queries_per_second(self) -> float:
        return self.queries / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "accepted": self.accepted,
            "accepted_share": self.accepted_share,
            "queries_per_second": self.queries_per_second,
            "rule": self.rule,
            "threshold_source": self.source,
            "certified_precision_lower_bound": self.precision_lower_bound,
            "index": self.index,
            "score_shift": self.shift,
            "score_shift_warning": self.shift_warning,
            "audit_sheet": self.audit_sheet,
        }


class _DecisionWriter:
    """Rows appended to a hidden file beside ``path`` in its format; :meth:`publish` renames it into place,
    :meth:`discard` removes it."""

    def __init__(self, path: Path) -> None:
        suffix = next((s for s in DECISION_SUFFIXES if path.name.endswith(s)), None)
        if suffix is None:
            raise ValueError(f"--output {path}: expected a file ending in one of {', '.join(DECISION_SUFFIXES)}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.suffix = path, suffix
        self.partial = path.with_name(f".{path.name}.partial")
        self._parquet: Any = None
        self._handle = None if suffix == ".parquet" else open(self.partial, "w", encoding="utf-8", newline="")  # noqa: SIM115
        if suffix == ".csv":
            self._csv = csv.writer(self._handle, lineterminator="\n")
            self._csv.writerow(DECISION_COLUMNS)

    def write(self, rows: list[dict[str, Any]]) -> None:
        if self.suffix == ".csv":
            self._csv.writerows([[row[column] for column in DECISION_COLUMNS] for row in rows])
        elif self.suffix == ".jsonl":
            self._handle.write("".join(json.dumps(row, allow_nan=False) + "\n" for row in rows))
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pylist(rows, schema=_parquet_schema())
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.partial, table.schema)
            self._parquet.write_table(table)

    def publish(self) -> Path:
        if self._handle is not None:
            self._handle.close()
        if self._parquet is not None:
            self._parquet.close()
        elif self.suffix == ".parquet":  # no query at all: an empty table with the columns
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist([], schema=_parquet_schema()), self.partial)
        os.replace(self.partial, self.path)
        return self.path

    def discard(self) -> None:
        if self._handle is not None:
            self._handle.close()
        if self._parquet is not None:
            self._parquet.close()
        self.partial.unlink(missing_ok=True)


def _parquet_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("query_id", pa.string()),
            ("query", pa.string()),
            ("top1_id", pa.string()),
            ("top1_text", pa.string()),
            ("accept_score", pa.float64()),
            ("decision", pa.string()),
            ("candidates", pa.string()),
        ]
    )


def decision_rows(matcher: Matcher, chunk: RecordChunk, result: MatchResult) -> list[dict[str, Any]]:
    """One row per query of ``chunk``; ``candidates`` (JSON: id, text and cosine of each of the top-k) on review
    rows only."""
    rows = []
    for row, (query_id, query) in enumerate(zip(chunk.ids, chunk.texts, strict=True)):
        top1 = int(result.ids[row, 0])
        score = float(result.accept_scores[row])
        accepted = bool(result.accepted[row])
        candidates = ""
        if not accepted:
            candidates = json.dumps(
                [
                    {"id": matcher.catalog_ids[i], "text": matcher.catalog_texts[i], "cosine": round(float(s), 6)}
                    for i, s in zip(result.ids[row], result.scores[row], strict=True)
                    if i >= 0
                ]
            )
        rows.append(
            {
                "query_id": query_id,
                "query": query,
                "top1_id": matcher.catalog_ids[top1] if top1 >= 0 else "",
                "top1_text": matcher.catalog_texts[top1] if top1 >= 0 else "",
                "accept_score": score if np.isfinite(score) else None,
                "decision": "accept" if accepted else "review",
                "candidates": candidates,
            }
        )
    return rows


class _Reservoir:
    """A uniform sample of at most ``size`` items from a stream (Algorithm R), seeded."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seen, self.items = size, 0, []
        self._rng = np.random.default_rng(seed)

    def add(self, item: Any) -> None:
        self.seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
        else:
            place = int(self._rng.integers(self.seen))
            if place < self.size:
                self.items[place] = item


class _Tally:
    """What the summary, the shift check and the audit need from the decided rows, in input order."""

    def __init__(self, audit: int, seed: int) -> None:
        self.queries = self.accepted = 0
        self.audit = audit
        self.traffic_scores: list[float] = []  # every query's top-1 accept score, for an audit plan
        self.shift_sample = _Reservoir(_SHIFT_SAMPLE, seed)
        self.accepted_sample = _Reservoir(audit, seed + 1) if audit else None

    def add(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            score = -np.inf if row["accept_score"] is None else float(row["accept_score"])
            self.shift_sample.add(score)
            if self.audit:
                self.traffic_scores.append(score)
            if row["decision"] == "accept":
                self.accepted += 1
                if self.accepted_sample is not None:
                    self.accepted_sample.add((self.queries, row["query"], row["top1_text"]))
            self.queries += 1


def process_shard() -> tuple[int, int]:
    """(rank, number of processes) under ``torchrun`` / ``accelerate launch`` (the gloo or NCCL group is set up here
    when it is not yet), (0, 1) in a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if _cuda_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def barrier() -> None:
    """Wait for every process (nothing in a single process)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist

        dist.barrier()


def match_file(
    matcher: Matcher,
    queries: str | Path,
    output: str | Path,
    id_column: str = "id",
    text_column: str = "text",
    chunk_size: int = 4096,
    audit: int = 0,
    seed: int = 0,
    progress: Any = None,
) -> MatchSummary | None:
    """Decide every query of the file ``queries`` and write the decisions to ``output`` (``.csv``, ``.jsonl`` or
    ``.parquet``, atomically), the summary to ``<output>.summary.json``, and with ``audit`` a sheet of that many
    accepted decisions drawn at random (``<output stem>.audit.csv`` and its plan) for ``alc-hf certify --labels``.
    ``progress`` is called with the number of queries this process has decided after each chunk.

    Under several processes (:func:`process_shard`) chunk ``i`` is decided by process ``i`` modulo their number,
    each writes its chunks beside the output, and the first merges them in input order: the file is the one a single
    process writes. The first process returns the summary, the others None.

    Raises:
        DataFormatError: a bad query row (its place named); nothing is left at ``output``.
    """
    output = Path(output)
    rank, world = process_shard()
    started = time.perf_counter()
    tally = _Tally(audit, seed)
    shards = output.with_name(f".{output.name}.shards")
    writer = _DecisionWriter(output) if rank == 0 else None
    done = 0
    try:
        for number, chunk in enumerate(read_record_chunks(queries, id_column, text_column, chunk_size)):
            if number % world != rank:
                continue
            rows = decision_rows(matcher, chunk, matcher.match(chunk.texts))
            if world == 1:
                writer.write(rows)
                tally.add(rows)
            else:
                shards.mkdir(parents=True, exist_ok=True)
                write_atomically(shards / f"{number:09d}.json", json.dumps(rows).encode())
            done += len(rows)
            if progress is not None:
                progress(done)
        barrier()
        if writer is not None and world > 1:
            for shard in sorted(shards.glob("*.json")) if shards.is_dir() else []:
                rows = json.loads(shard.read_text(encoding="utf-8"))
                writer.write(rows)
                tally.add(rows)
        path = writer.publish() if writer is not None else None
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    finally:
        if rank == 0 and shards.is_dir():
            shutil.rmtree(shards)
    barrier()
    if path is None:
        return None
    return _summarise(matcher, path, tally, time.perf_counter() - started, audit, seed)


def _summarise(matcher: Matcher, path: Path, tally: _Tally, seconds: float, audit: int, seed: int) -> MatchSummary:
    shift = matcher.shift(np.asarray(tally.shift_sample.items, dtype=np.float64))
    audit_sheet = None
    if tally.accepted_sample is not None and tally.accepted_sample.items:
        sample = tally.accepted_sample.items
        audit_sheet = str(_write_audit_sheet(matcher, path, tally.traffic_scores, sample, audit, seed))
    rule = matcher.rule
    summary = MatchSummary(
        queries=tally.queries,
        accepted=tally.accepted,
        seconds=seconds,
        rule=rule.describe(),
        source=rule.source,
        precision_lower_bound=rule.precision_lower_bound,
        index=f"{matcher.index_kind} over {len(matcher.catalog_ids):,} products",
        shift=None if shift is None else shift.describe(),
        shift_warning=bool(shift is not None and shift.warning),
        audit_sheet=audit_sheet,
    )
    write_atomically(summary_path(path), json.dumps(summary.to_dict(), indent=2).encode())
    return summary


def summary_path(output: Path) -> Path:
    return output.with_name(f"{output.name}.summary.json")


def _write_audit_sheet(
    matcher: Matcher,
    output: Path,
    traffic_scores: list[float],
    sample: list[tuple[int, str, str]],
    budget: int,
    seed: int,
) -> Path:
    """A certification sheet of the accepted decisions ``sample`` (a uniform sample of them): its plan's region is
    the accepted traffic, so ``alc-hf certify --labels`` certifies a threshold on today's traffic from it."""
    scores = np.asarray(traffic_scores, dtype=np.float64)
    accepted_scores = scores[scores >= matcher.rule.threshold]
    rng = np.random.default_rng(seed + 2)
    order = rng.permutation(len(sample))
    drawn = [sample[i] for i in order]
    rule = matcher.rule
    plan = CertificationPlan(
        model=matcher.model_name,
        model_dir=matcher.model_dir,
        traffic=f"the queries decided into {output.name}",
        accept_score=rule.accept_score,
        target_precision=rule.target_precision or 0.9,
        delta=0.05,
        round_size=min(budget, len(drawn)),
        max_rounds=1,
        max_coverage=float(accepted_scores.size / max(1, np.isfinite(scores).sum())),
        seed=seed,
        region_threshold=float(rule.threshold),
        scores=[float(s) if np.isfinite(s) else None for s in scores],
        order=[position for position, _, _ in drawn],
        queries=[query for _, query, _ in drawn],
        top1_labels=[label for _, _, label in drawn],
        region_size=int(accepted_scores.size),
    )
    sheet = output.with_name(f"{output.name.split('.')[0]}.audit.csv")
    plan.save(plan_path(sheet))
    write_sheet(plan, sheet, 1, [])
    return sheet
