"""Certify a threshold on your traffic, with a person labelling: the plan, the sheet they fill in, and the result.

1. :func:`plan_certification` fixes, from the traffic's top-1 predictions alone (no label), everything the
   guarantee needs: the region labels are drawn from, one random order of it, the round size and the number of
   rounds (see :mod:`alc_hf.metrics.certify`). :meth:`CertificationPlan.save` writes it beside the sheet
   (``sheet.plan.json``), :func:`write_sheet` the rows of a round: ``round, traffic_index, query, top1_label, score``
   and an empty ``correct`` column, for a person to fill in with 1 (the top-1 label is right) or 0.
2. :func:`read_labels` reads the sheet back, strictly: every row must be the plan's row at its place (a sheet from
   another plan, a reordered or edited row is an error naming its line), a label must be 0/1 (or yes/no,
   true/false), and a round counts only when all its rows are labelled (the guarantee needs the whole uniform
   sample: a partly labelled round is an error that names the empty lines).
3. :func:`certify_sheet` certifies from the labelled rounds at ``delta / max_rounds``; when the loosest certified
   threshold is followed by an undecided one and rounds remain, :func:`write_sheet` adds the next round's rows.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from alc_hf.data.formats import DataFormatError, csv_records
from alc_hf.evaluation.report import write_atomically
from alc_hf.metrics.certify import Certification, certify_threshold, draw_order, labelling_region

__all__ = [
    "SHEET_COLUMNS",
    "CertificationPlan",
    "SheetLabels",
    "certification_card_section",
    "certify_sheet",
    "plan_certification",
    "plan_path",
    "read_labels",
    "replace_card_section",
    "write_sheet",
]

SHEET_COLUMNS = ("round", "traffic_index", "query", "top1_label", "score", "correct")
LABEL_VALUES = {"1": True, "yes": True, "y": True, "true": True, "0": False, "no": False, "n": False, "false": False}
CARD_HEADING = "## Certified threshold"


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
) -> CertificationPlan:
    """The plan of a certification of ``target_precision`` on the traffic whose top-1 predictions have ``scores``
    (``-inf``: none), ``queries`` and ``top1_labels``: rounds of ``budget`` labels, at most ``max_rounds``, drawn in
    one random order (``seed``) from the region above the score that ``max_coverage`` of the traffic reaches."""
    scores = np.asarray(scores, dtype=np.float64)
    if not len(queries) == len(top1_labels) == scores.size:
        raise ValueError(f"{scores.size} scores, {len(queries)} queries and {len(top1_labels)} top-1 labels")
    if budget < 1 or max_rounds < 1:
        raise ValueError(f"budget and max_rounds must be at least 1, got {budget} and {max_rounds}")
    if not 0.0 < delta < 1.0 or not 0.0 < target_precision < 1.0:
        raise ValueError(f"target_precision and delta must be in (0, 1), got {target_precision} and {delta}")
    region_threshold = labelling_region(scores, max_coverage)
    order = draw_order(scores, region_threshold, seed)
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
    )


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
            one whose round or score differs from the plan's), a label other than 0/1 (yes/no, true/false), a round
            partly labelled, no round labelled; the message names the line.
    """
    sheet = Path(sheet)
    place_of = {index: place for place, index in enumerate(plan.order)}
    rows: list[list[str]] = []
    label_at: dict[int, bool | None] = {}  # place in the draw order -> label
    line_at: dict[int, int] = {}
    for _, line, values in csv_records(sheet, SHEET_COLUMNS):
        round_text, index_text, _, _, score, correct = (value.strip() for value in values)
        place = place_of.get(int(index_text)) if index_text.isdigit() else None
        if place is None or place >= plan.num_rounds_possible * plan.round_size:
            raise DataFormatError(f"{sheet}:{line}: traffic_index {index_text!r} is not a row of the plan")
        if place in line_at:
            raise DataFormatError(f"{sheet}:{line}: traffic_index {index_text} is already on line {line_at[place]}")
        expected = plan.rows(place // plan.round_size + 1)[place % plan.round_size]
        if (round_text, score) != (str(expected["round"]), expected["score"]):
            raise DataFormatError(
                f"{sheet}:{line}: traffic_index {index_text} has round {round_text} and score {score}, but the plan "
                f"{plan_path(sheet).name} says round {expected['round']} and score {expected['score']}: keep those "
                "columns as written"
            )
        if correct and correct.lower() not in LABEL_VALUES:
            raise DataFormatError(
                f"{sheet}:{line}: correct {correct!r}, expected 1 (the top-1 label is right) or 0 (it is wrong)"
            )
        rows.append(list(values))
        label_at[place] = LABEL_VALUES.get(correct.lower())
        line_at[place] = line
    rounds = 0
    while rounds < plan.num_rounds_possible:
        places = range(rounds * plan.round_size, min((rounds + 1) * plan.round_size, len(plan.order)))
        missing = [place for place in places if place not in label_at]
        empty = sorted(line_at[place] for place in places if place in label_at and label_at[place] is None)
        if len(missing) + len(empty) == len(places):
            break  # the round is not labelled (or not written yet)
        if missing or empty:
            shown = ", ".join(map(str, empty[:5])) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
            said = f"empty 'correct' on lines {shown}" if empty else f"{len(missing)} of its rows are missing"
            raise DataFormatError(
                f"{sheet}: round {rounds + 1} is partly labelled ({said}): label every row of a round, the guarantee "
                "needs its whole random sample"
            )
        rounds += 1
    if rounds == 0:
        raise DataFormatError(f"{sheet}: no round is labelled yet: fill in the 'correct' column (1 or 0) of its rows")
    labelled = range(min(rounds * plan.round_size, len(plan.order)))
    return SheetLabels(
        positions=np.array([plan.order[place] for place in labelled], dtype=np.int64),
        correct=np.array([label_at[place] for place in labelled], dtype=bool),
        rounds=rounds,
        rows=rows,
    )


def certify_sheet(sheet: str | Path) -> tuple[CertificationPlan, SheetLabels, Certification]:
    """Certify from a sheet's labelled rounds (each round at ``delta / max_rounds``)."""
    plan = CertificationPlan.load(plan_path(sheet))
    labels = read_labels(sheet, plan)
    if labels.rounds > plan.max_rounds:
        raise DataFormatError(f"{sheet}: {labels.rounds} rounds labelled but the plan allows {plan.max_rounds}")
    certification = certify_threshold(
        plan.traffic_scores,
        labels.positions,
        labels.correct,
        plan.target_precision,
        plan.region_threshold,
        plan.round_delta,
    )
    return plan, labels, certification


def certification_card_section(plan: CertificationPlan, certification: Certification) -> str:
    """The model card's section on the certified threshold."""
    confidence = f"{1 - plan.delta:.0%}"
    common = (
        f"from {certification.num_labelled} labelled top-1 predictions of `{plan.traffic}` "
        f"({certification.num_predictions} queries), drawn at random above {plan.region_threshold:.4f} "
        f"(`alc-hf certify`, fixed-sequence testing with an exact hypergeometric bound; `alc_hf.metrics.certify`)"
    )
    if not certification.certified:
        body = (
            f"No threshold could be certified for precision {plan.target_precision:g} at confidence {confidence} "
            f"{common}: accept nothing automatically, or label more."
        )
    else:
        body = (
            f"Accept the top-1 label when its `{plan.accept_score}` score is at least "
            f"**{certification.threshold:.6f}**: on that traffic its precision is at least {plan.target_precision:g} "
            f"with probability {confidence} (lower bound {certification.precision_lower_bound:.3f}; "
            f"{certification.num_labelled_accepted} labelled above it, {certification.labelled_precision:.3f} "
            f"correct), and it accepts {certification.coverage:.1%} of it. Certified {common}."
        )
    return f"{CARD_HEADING}\n\n{body}\n"


def replace_card_section(card: str, section: str) -> str:
    """``card`` with its certified-threshold section replaced by ``section`` (appended when it has none)."""
    start = card.find(CARD_HEADING)
    if start < 0:
        return card.rstrip("\n") + "\n\n" + section
    end = card.find("\n## ", start + len(CARD_HEADING))
    return card[:start] + section + ("" if end < 0 else card[end:])
