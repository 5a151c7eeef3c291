"""The evaluation options the programs share (``alc-hf evaluate``, ``alc-hf certify``, ``alc-hf train`` and the
recipe), declared once with their ranges: how queries are retrieved and re-ranked, how thresholds are calibrated,
and the risk level δ."""

from __future__ import annotations

from dataclasses import dataclass, field

from alc_hf.core.metrics import CALIBRATION_METHODS
from alc_hf.core.program import OptionRange, check_choice_option, check_option_ranges

__all__ = ["EVALUATION_VIEWS", "CalibrationArguments", "RetrievalArguments", "RiskArguments"]

EVALUATION_VIEWS = ("corpus", "labelled")

# Checked when the options are parsed, before any data is read or any model loaded.
RANGES = {
    "rerank_depth": OptionRange(1),
    "target_precisions": OptionRange(0, 1, low_included=False),
    "delta": OptionRange(0, 1, low_included=False, high_included=False),
}


@dataclass
class RetrievalArguments:
    """What each query is ranked against, and how deep the verifier re-ranks."""

    evaluation_view: str | None = field(
        default=None,
        metadata={
            "help": "Rank each query against every label ('corpus') or only its labelled candidates ('labelled'); "
            "default: labelled for tables/wdc and for pairs with --relevance_column, corpus otherwise."
        },
    )
    rerank_depth: int = field(default=5, metadata={"help": "Top predictions the verifier re-ranks (verifier_rerank)."})

    def __post_init__(self) -> None:
        check_choice_option("evaluation_view", self.evaluation_view, EVALUATION_VIEWS)
        check_option_ranges(self, RANGES)


@dataclass
class CalibrationArguments:
    """The thresholds calibrated on the calibration split and applied to test."""

    target_precisions: list[float] = field(
        default_factory=lambda: [0.9, 0.95],
        metadata={"help": "The precisions a threshold is calibrated for, each in (0, 1]."},
    )
    calibration_method: str = field(
        default="empirical",
        metadata={
            "help": "'empirical': the loosest threshold whose calibration precision reaches the target; "
            "'clopper_pearson': whose one-sided lower bound (confidence 1 - --delta) does."
        },
    )

    def __post_init__(self) -> None:
        check_choice_option("calibration_method", self.calibration_method, CALIBRATION_METHODS)
        check_option_ranges(self, RANGES)


@dataclass
class RiskArguments:
    """The risk level δ of every guarantee a program gives."""

    delta: float = field(
        default=0.05,
        metadata={
            "help": "Risk level δ: with --calibration_method clopper_pearson, the chance the calibrated threshold's "
            "precision bound fails; for alc-hf certify, the chance the certified precision is missed."
        },
    )

    def __post_init__(self) -> None:
        check_option_ranges(self, RANGES)
