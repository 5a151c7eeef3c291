"""Certify a threshold on your traffic, with a person labelling: the plan, the sheet they fill in, and the result.

1. :func:`plan_certification` fixes, from the traffic's top-1 predictions alone (no label), everything the
   guarantee needs: the region labels are drawn from, one random order of it, the round size and the number of
   rounds (see :mod:`alc_hf.core.metrics.certify`). :meth:`CertificationPlan.save` writes it beside the sheet
   (``sheet.plan.json``), :func:`write_sheet` the rows of a round: ``round, traffic_index, query, top1_label, score``
   and an empty ``correct`` column, for a person to fill in with 1 (the top-1 label is right) or 0.
2. :func:`read_labels` reads the sheet back, strictly: every row must be the plan's row at its place (a sheet from
   another plan, an edited row is an error naming its line; numbers are compared as numbers, to the digits the
   sheet shows, so a sheet saved by a spreadsheet reads back), a label must be one of :data:`LABEL_SPELLINGS`, and
   a round counts only when all its rows are labelled (the guarantee needs the whole uniform sample: a partly
   labelled round is an error that names the empty lines and the missing rows).
3. :func:`certify_sheet` certifies from the labelled rounds at ``delta / max_rounds``; when the loosest certified
   threshold is followed by an undecided one and rounds remain, :func:`write_sheet` adds the next round's rows.
4. :func:`record_certification` keeps every certification of a model in its folder's ``certifications.json``, one
   entry per (traffic, accept score, target precision, delta, backend); the card's "Certified thresholds" section
   lists them all (:func:`certifications_card_section`). A new certification replaces only the entry with its key.
"""

from __future__ import annotations

import csv
import decimal
import io
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from alc_hf.core.files import write_atomically
from alc_hf.core.metrics.certify import (
    Certification,
    certify_threshold,
    draw_order,
    labelling_region,
)
from alc_hf.data.formats import DataFormatError, csv_records

__all__ = [
    "CERTIFICATIONS_FILE",
    "LABEL_SPELLINGS",
    "SHEET_COLUMNS",
    "CertificationPlan",
    "SheetLabels",
    "certification_record",
    "certifications_card_section",
    "certify_sheet",
    "keep_earlier_plan",
    "parse_label",
    "plan_certification",
    "plan_path",
    "read_certifications",
    "read_labels",
    "record_certification",
    "replace_card_section",
    "why_not_looser",
    "write_sheet",
]

SHEET_COLUMNS = ("round", "traffic_index", "query", "top1_label", "score", "correct")
_LABEL_WORDS = {"yes": True, "y": True, "true": True, "no": False, "n": False, "false": False}
# Said alike by the reader's message, the sheet's instructions and docs/evaluation.md.
LABEL_SPELLINGS = (
    "1, yes, y or true when the top-1 label is right; 0, no, n or false when it is wrong (any case; 1.0 and 0.0 too)"
)
# A heading that starts both this section and the single-certificate section of earlier versions.
CARD_HEADING = "## Certified threshold"
# Every certification of a model, in its folder: what the card section shows and what a deployment reads.
CERTIFICATIONS_FILE = "certifications.json"
# Quantiles of the certified traffic's top-1 scores kept with a certification.
REFERENCE_QUANTILES = 1001
# The fields that say what a certification is of: a new one with the same replaces the old one.
CERTIFICATION_KEY = ("traffic", "accept_score", "target_precision", "delta", "backend")


def parse_label(text: str) -> bool | None:
    """A sheet's ``correct`` cell: True (right), False (wrong), None (empty); ValueError for anything else."""
    text = text.strip().lower()
    if not text:
        return None
    if text in _LABEL_WORDS:
        return _LABEL_WORDS[text]
    number = _sheet_number(text)
    if number is not None and number in (0, 1):
        return number == 1
    raise ValueError(f"correct {text!r}: expected {LABEL_SPELLINGS}")


def _sheet_number(text: str) -> decimal.Decimal | None:
    """A number as a sheet holds it (``12``, ``12.0``, ``0.55776``, ``5.5776E-01``), or None."""
    try:
        number = decimal.Decimal(text.strip())
    except decimal.InvalidOperation:
        return None
    return number if number.is_finite() else None


def _half_unit(number: decimal.Decimal) -> decimal.Decimal:
    """Half a unit of the last digit ``number`` was written with: how far the value it stands for can be."""
    return decimal.Decimal(5).scaleb(number.as_tuple().exponent - 1)


def _same_number(text: str, written: str) -> bool:
    """Whether the sheet's ``text`` is the number the plan ``written`` there, to the digits each shows: a spreadsheet
    drops trailing zeros (``0.55776`` for ``0.557760``), shows fewer digits or an exponent, never another value."""
    number, expected = _sheet_number(text), decimal.Decimal(written)
    return number is not None and abs(number - expected) <= _half_unit(number) + _half_unit(expected)


def plan_path(sheet: str | Path) -> Path:
    """The plan saved beside a sheet: ``labels.csv`` -> ``labels.plan.json``."""
    sheet = Path(sheet)
    return sheet.with_name(f"{sheet.stem}.plan.json")


@dataclass(frozen=True)
class CertificationPlan:
    """Everything fixed before any label: what is certified, the traffic's scores, and the order labels are
    drawn in (with each drawn prediction's query and top-1 label texts, for the sheet). ``scores`` holds ``None``
    for a query without a prediction."""

    model: str
    traffic: str
    accept_score: str
    target_precision: float
    delta: float
    round_size: int
    max_rounds: int
    max_coverage: float
    seed: int
    region_threshold: float
    scores: list[float | None]
    order: list[int]
    queries: list[str]
    top1_labels: list[str]
    version: int = field(default=1)
    # The model folder as an absolute path, whose card step 2 writes; None for a Hub id or an installed model.
    model_dir: str | None = None
    # What computed the scores (alc_hf.models.onnx_encoder.BACKENDS): a threshold holds for its backend's scores.
    backend: str = "torch"
    # The plans for the same traffic this one replaced (kept beside it by :func:`keep_earlier_plan`), oldest first.
    earlier_plans: list[str] = field(default_factory=list)
    # Where test sequences start besides the strictest (alc_hf.core.metrics.certify.sequence_starts); plans written
    # before it was recorded started at the strictest alone.
    start_shares: list[float] = field(default_factory=list)
    # The predictions in the region, which `order` draws from (all of them, or for an audit sheet the first part);
    # None in plans written before it was recorded, where `order` is the whole region.
    region_size: int | None = None

    @property
    def num_in_region(self) -> int:
        return len(self.order) if self.region_size is None else self.region_size

    @property
    def round_delta(self) -> float:
        """Each round's level: the rounds share ``delta`` (a union bound), so stopping after any keeps it."""
        return self.delta / self.max_rounds

    @property
    def traffic_scores(self) -> np.ndarray:
        return np.array([-math.inf if s is None else s for s in self.scores], dtype=np.float64)

    def rows(self, round_number: int) -> list[dict[str, object]]:
        """The sheet rows of round ``round_number`` (from 1): the next ``round_size`` of the draw order."""
        start = (round_number - 1) * self.round_size
        return [
            {
                "round": round_number,
                "traffic_index": self.order[place],
                "query": self.queries[place],
                "top1_label": self.top1_labels[place],
                "score": f"{self.scores[self.order[place]]:.6f}",
                "correct": "",
            }
            for place in range(start, min(start + self.round_size, len(self.order)))
        ]

    @property
    def num_rounds_possible(self) -> int:
        return min(self.max_rounds, math.ceil(len(self.order) / self.round_size))

    def save(self, path: str | Path) -> Path:
        return write_atomically(Path(path), json.dumps(asdict(self), indent=1, allow_nan=False).encode())

    @classmethod
    def load(cls, path: str | Path) -> CertificationPlan:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no certification plan {path}: it is written beside the sheet by `alc-hf certify`")
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
            return cls(**values)
        except (ValueError, TypeError) as error:
            raise DataFormatError(f"{path}: not a certification plan ({error})") from error


def plan_certification(
    scores: Sequence[float] | np.ndarray,
    queries: Sequence[str],
    top1_labels: Sequence[str],
    *,
    model: str,
    traffic: str,
    accept_score: str,
    target_precision: float = 0.9,
    delta: float = 0.05,
    budget: int = 100,
    max_rounds: int = 1,
    max_coverage: float = 1.0,
    seed: int = 0,
    model_dir: str | None = None,
    backend: str = "torch",
    earlier_plans: Sequence[str] = (),
    start_shares: Sequence[float] = (),
) -> CertificationPlan:
    """The plan of a certification of ``target_precision`` on the traffic whose top-1 predictions have ``scores``
    (``-inf``: none), ``queries`` and ``top1_labels``: rounds of ``budget`` labels, at most ``max_rounds``, drawn in
    one random order (``seed``) from the region above the score that ``max_coverage`` of the traffic reaches."""
    scores = np.asarray(scores, dtype=np.float64)
    if not len(queries) == len(top1_labels) == scores.size:
        raise ValueError(f"{scores.size} scores, {len(queries)} queries and {len(top1_labels)} top-1 labels")
    if budget < 1 or max_rounds < 1:
        raise ValueError(f"budget and max_rounds must be at least 1, got {budget} and {max_rounds}")
    if not 0.0 < delta < 1.0 or not 0.0 < target_precision <= 1.0:
        raise ValueError(f"target_precision must be in (0, 1] and delta in (0, 1), got {target_precision} and {delta}")
    region_threshold = labelling_region(scores, max_coverage)
    order = draw_order(scores, region_threshold, seed)
    if target_precision == 1.0 and budget < order.size:
        raise ValueError(
            f"a precision of 1 is certified only by a census: --budget {budget} must cover the {order.size} "
            "predictions of the region (lower --max_coverage, or raise --budget)"
        )
    return CertificationPlan(
        model=model,
        traffic=traffic,
        accept_score=accept_score,
        target_precision=float(target_precision),
        delta=float(delta),
        round_size=int(budget),
        max_rounds=int(max_rounds),
        max_coverage=float(max_coverage),
        seed=int(seed),
        region_threshold=region_threshold,
        scores=[float(s) if math.isfinite(s) else None for s in scores],
        order=[int(i) for i in order],
        queries=[queries[i] for i in order],
        top1_labels=[top1_labels[i] for i in order],
        model_dir=model_dir,
        backend=backend,
        earlier_plans=list(earlier_plans),
        start_shares=[float(share) for share in start_shares],
        region_size=int(order.size),
    )


def keep_earlier_plan(sheet: str | Path) -> tuple[list[Path], CertificationPlan | None]:
    """Move the sheet and plan a new plan replaces to ``<stem>.earlier-<k>`` beside them (the first ``k`` free);
    return where they went and the earlier plan (None when there was none). Nothing is deleted: the labels a person
    gave stay, and the new plan can name the one it replaced."""
    sheet = Path(sheet)
    k = 1
    while any(path.exists() for path in (_earlier(sheet, k), plan_path(_earlier(sheet, k)))):
        k += 1
    earlier = CertificationPlan.load(plan_path(sheet)) if plan_path(sheet).is_file() else None
    kept = []
    for path, moved in ((sheet, _earlier(sheet, k)), (plan_path(sheet), plan_path(_earlier(sheet, k)))):
        if path.exists():
            kept.append(path.replace(moved))
    return kept, earlier


def _earlier(sheet: Path, k: int) -> Path:
    return sheet.with_name(f"{sheet.stem}.earlier-{k}{sheet.suffix}")


def write_sheet(plan: CertificationPlan, sheet: str | Path, round_number: int, earlier: list[list[str]]) -> Path:
    """Write the sheet: the rows ``earlier`` already in it (as read, labels kept), then round ``round_number``'s
    rows, unlabelled. Atomic: a reader never sees half a sheet."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SHEET_COLUMNS)
    writer.writerows(earlier)
    writer.writerows([[row[column] for column in SHEET_COLUMNS] for row in plan.rows(round_number)])
    return write_atomically(Path(sheet), buffer.getvalue().encode())


@dataclass(frozen=True)
class SheetLabels:
    """The labels of a sheet's complete rounds: traffic positions and whether each top-1 is correct, and every
    row as read (to write the sheet again with a round more)."""

    positions: np.ndarray
    correct: np.ndarray
    rounds: int
    rows: list[list[str]]


def read_labels(sheet: str | Path, plan: CertificationPlan) -> SheetLabels:
    """The labels of ``sheet``, checked against ``plan`` row by row (see the module docstring). Rows may be in any
    order (a person may sort the sheet): each is known by its ``traffic_index``.

    Raises:
        FileNotFoundError: no sheet.
        DataFormatError: a missing column, a row the plan does not hold (an unknown or repeated traffic_index, or
            one whose round or score differs from the plan's), a label not in :data:`LABEL_SPELLINGS`, a round
            partly labelled (its empty lines and missing rows named), no round labelled; the message names the line.
    """
    sheet = Path(sheet)
    place_of = {index: place for place, index in enumerate(plan.order)}
    rows: list[list[str]] = []
    label_at: dict[int, bool | None] = {}  # place in the draw order -> label
    line_at: dict[int, int] = {}
    for _, line, values in csv_records(sheet, SHEET_COLUMNS):
        round_text, index_text, _, _, score, correct = (value.strip() for value in values)
        index = _sheet_number(index_text)
        place = place_of.get(int(index)) if index is not None and index == int(index) else None
        if place is None or place >= plan.num_rounds_possible * plan.round_size:
            raise DataFormatError(f"{sheet}:{line}: traffic_index {index_text!r} is not a row of the plan")
        if place in line_at:
            raise DataFormatError(f"{sheet}:{line}: traffic_index {index_text} is already on line {line_at[place]}")
        expected = plan.rows(place // plan.round_size + 1)[place % plan.round_size]
        if not (_same_number(round_text, str(expected["round"])) and _same_number(score, str(expected["score"]))):
            raise DataFormatError(
                f"{sheet}:{line}: traffic_index {index_text} has round {round_text} and score {score}, but the plan "
                f"{plan_path(sheet).name} says round {expected['round']} and score {expected['score']}: keep those "
                "columns as written"
            )
        try:
            label_at[place] = parse_label(correct)
        except ValueError as error:
            raise DataFormatError(f"{sheet}:{line}: {error}") from None
        rows.append(list(values))
        line_at[place] = line
    rounds = 0
    while rounds < plan.num_rounds_possible:
        places = range(rounds * plan.round_size, min((rounds + 1) * plan.round_size, len(plan.order)))
        missing = [place for place in places if place not in label_at]
        empty = sorted(line_at[place] for place in places if place in label_at and label_at[place] is None)
        if len(missing) + len(empty) == len(places):
            break  # the round is not labelled (or not written yet)
        if missing or empty:
            said = []
            if empty:
                said.append(f"empty 'correct' on line{'s' if len(empty) > 1 else ''} {_first_few(empty)}")
            if missing:
                named = [f"traffic_index {plan.order[place]} ({plan.queries[place]!r})" for place in missing]
                verb = "are" if len(missing) > 1 else "is"
                said.append(f"{len(missing)} of its rows {verb} missing: {_first_few(named)}")
            raise DataFormatError(
                f"{sheet}: round {rounds + 1} is partly labelled ({'; '.join(said)}): label every row of a round, the "
                "guarantee needs its whole random sample"
            )
        rounds += 1
    if rounds == 0:
        raise DataFormatError(
            f"{sheet}: no round is labelled yet: fill in the 'correct' column of its rows ({LABEL_SPELLINGS})"
        )
    labelled = range(min(rounds * plan.round_size, len(plan.order)))
    return SheetLabels(
        positions=np.array([plan.order[place] for place in labelled], dtype=np.int64),
        correct=np.array([label_at[place] for place in labelled], dtype=bool),
        rounds=rounds,
        rows=rows,
    )


def _first_few(items: Sequence[object], shown: int = 5) -> str:
    return ", ".join(map(str, items[:shown])) + (f" and {len(items) - shown} more" if len(items) > shown else "")


def certify_sheet(sheet: str | Path) -> tuple[CertificationPlan, SheetLabels, Certification, Certification]:
    """Certify from a sheet's labelled rounds: round ``r`` with the labels of rounds 1..r, at ``delta /
    max_rounds``. Returns the plan, the labels, the loosest certification of any round (the latest when none is
    looser) and the latest round's (whose next candidate says whether another round can help)."""
    sheet = Path(sheet)
    if not sheet.is_file():
        raise FileNotFoundError(
            f"no sheet {sheet}: `alc-hf certify MODEL --data ... --split ... --budget N --sheet {sheet}` writes it"
        )
    plan = CertificationPlan.load(plan_path(sheet))
    labels = read_labels(sheet, plan)
    if labels.rounds > plan.max_rounds:
        raise DataFormatError(f"{sheet}: {labels.rounds} rounds labelled but the plan allows {plan.max_rounds}")
    by_round = [
        certify_threshold(
            plan.traffic_scores,
            labels.positions[: rounds * plan.round_size],
            labels.correct[: rounds * plan.round_size],
            plan.target_precision,
            plan.region_threshold,
            plan.round_delta,
            region_size=plan.num_in_region,
            start_shares=plan.start_shares,
        )
        for rounds in range(1, labels.rounds + 1)
    ]
    loosest = max(reversed(by_round), key=lambda certification: certification.num_accepted)
    return plan, labels, loosest, by_round[-1]


def why_not_looser(certification: Certification) -> str:
    """Why nothing looser is certified, in figures: the next threshold, its labelled predictions and what they show
    (empty when the loosest candidate is certified)."""
    if certification.stopped_threshold is None:
        return ""
    labelled, correct = certification.stopped_num_labelled, certification.stopped_num_correct
    threshold = certification.stopped_threshold
    if certification.census:
        where = "the next looser threshold" if certification.certified else "even the strictest threshold"
        return (
            f"{where}, {threshold!r}, accepts {labelled} predictions, all labelled, {correct} correct "
            f"({correct / labelled:.3f}), under the target {certification.target_precision:g}"
        )
    where = (
        "the next looser threshold" if certification.certified else "the loosest threshold a test sequence starts at"
    )
    if labelled == 0:
        return f"{where}, {threshold!r}, has no labelled prediction at or above it"
    return (
        f"{where}, {threshold!r}, has {labelled} labelled prediction(s) at or above it, {correct} correct "
        f"({correct / labelled:.3f}), which only show a precision of at least "
        f"{certification.stopped_precision_lower_bound:.3f} there with probability {1 - certification.test_level:.2%} "
        f"(each of the {certification.num_sequences} test sequences' level), under the target "
        f"{certification.target_precision:g}"
    )


def certification_record(
    plan: CertificationPlan, labels: SheetLabels, certification: Certification, sheet: str | Path
) -> dict:
    """One certification as JSON takes it: what it is of (:data:`CERTIFICATION_KEY`), where it came from, when,
    and its figures."""
    return {
        "traffic": plan.traffic,
        "accept_score": plan.accept_score,
        "target_precision": plan.target_precision,
        "delta": plan.delta,
        "model": plan.model,
        "sheet": str(Path(sheet).resolve()),
        "certified_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "rounds_labelled": labels.rounds,
        "max_rounds": plan.max_rounds,
        "round_delta": plan.round_delta,
        "max_coverage": plan.max_coverage,
        "backend": plan.backend,
        "earlier_plans": plan.earlier_plans,
        "certification": certification.to_dict(),
        # Quantiles of the traffic's top-1 scores: what `alc-hf match` compares new traffic with.
        "reference_scores": reference_scores(plan.traffic_scores),
    }


def reference_scores(scores: np.ndarray, num_quantiles: int = REFERENCE_QUANTILES) -> list[float]:
    """``num_quantiles`` evenly spaced quantiles of the finite ``scores``: a compact stand-in for the distribution
    of a traffic's top-1 scores (a query without a prediction counts as the lowest score)."""
    finite = scores[np.isfinite(scores)]
    lowest = float(finite.min()) if finite.size else 0.0
    values = np.where(np.isfinite(scores), scores, lowest)
    return [float(value) for value in np.quantile(values, np.linspace(0.0, 1.0, num_quantiles))]


def read_certifications(model_dir: str | Path) -> list[dict]:
    """Every certification kept in ``model_dir/certifications.json``, oldest first (none when there is no file).

    Raises:
        DataFormatError: the file is not what :func:`record_certification` writes.
    """
    path = Path(model_dir) / CERTIFICATIONS_FILE
    if not path.is_file():
        return []
    try:
        records = json.loads(path.read_text(encoding="utf-8"))["certifications"]
    except (ValueError, KeyError, TypeError) as error:
        raise DataFormatError(f"{path}: not a list of certifications ({error}); move it away to start anew") from error
    if not isinstance(records, list):
        raise DataFormatError(f"{path}: 'certifications' is not a list; move it away to start anew")
    return records


def record_certification(model_dir: str | Path, record: dict) -> tuple[list[dict], dict | None]:
    """Add ``record`` to ``model_dir/certifications.json`` (written atomically), replacing the entry with the same
    :data:`CERTIFICATION_KEY` if there is one. Returns every entry, and the one replaced (None if none)."""
    path = Path(model_dir) / CERTIFICATIONS_FILE
    records = read_certifications(model_dir)
    key = tuple(record[name] for name in CERTIFICATION_KEY)
    replaced = next((each for each in records if tuple(each.get(name) for name in CERTIFICATION_KEY) == key), None)
    records = [each for each in records if each is not replaced] + [record]
    write_atomically(path, json.dumps({"certifications": records}, indent=2, allow_nan=False).encode())
    return records, replaced


def certifications_card_section(records: Sequence[dict]) -> str:
    """The model card's section listing every certification of ``records`` (as :func:`certification_record` makes
    them), one paragraph each."""
    paragraphs = []
    for record in records:
        figures = record["certification"]
        confidence = f"{1 - record['delta']:.0%}"
        backend = record.get("backend", "torch")
        heading = (
            f"### `{record['accept_score']}` at precision {record['target_precision']:g}, confidence {confidence}, "
            f"on `{record['traffic']}`" + ("" if backend == "torch" else f", scores computed with `{backend}`")
        )
        common = (
            f"from {figures['num_labelled']} labelled top-1 predictions ({figures['num_predictions']} queries), drawn "
            f"at random above {figures['region_threshold']:.6f}, on {record['certified_at']} (sheet "
            f"`{Path(record['sheet']).name}`; `alc-hf certify`, fixed-sequence testing with an exact hypergeometric "
            "bound, `alc_hf.core.metrics.certify`)"
        )
        if figures["threshold"] is None:
            body = (
                f"No threshold could be certified {common}: accept nothing automatically by this score, or label more."
            )
        else:
            guarantee = (
                f"its precision is {figures['labelled_precision']:.3f} (every prediction above it labelled)"
                if figures.get("census")
                else f"its precision is at least {record['target_precision']:g} with probability {confidence} "
                f"({figures['num_labelled_accepted']} labelled above it, {figures['labelled_precision']:.3f} correct)"
            )
            body = (
                f"Accept the top-1 label when its `{record['accept_score']}` score is at least "
                f"**{figures['threshold']!r}**: on that traffic {guarantee}, and it accepts "
                f"{figures['num_accepted']} of its {figures['num_predictions']} queries ({figures['coverage']:.1%}). "
                f"Certified {common}."
            )
        paragraphs.append(f"{heading}\n\n{body}\n")
    return (
        f"{CARD_HEADING}s\n\nEach certification holds for its own traffic and accept score; "
        f"`{CERTIFICATIONS_FILE}` in this folder holds their figures.\n\n" + "\n".join(paragraphs)
    )


def replace_card_section(card: str, section: str) -> str:
    """``card`` with its certified-threshold section replaced by ``section`` (appended when it has none)."""
    start = card.find(CARD_HEADING)
    if start < 0:
        return card.rstrip("\n") + "\n\n" + section
    end = card.find("\n## ", start + len(CARD_HEADING))
    return card[:start] + section + ("" if end < 0 else card[end:])
