"""The options of the train program (``alc-hf train``, ``recipes/train_alc.py``), as dataclasses that
``HfArgumentParser`` reads from a YAML/JSON file and the command line (which overrides the file). The options it
shares with ``alc-hf evaluate`` and ``alc-hf certify`` are declared once, in :mod:`alc_hf.data.options` and
:mod:`alc_hf.evaluation.options`; the ones here are training's own, each with its range and help."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sentence_transformers import SentenceTransformerTrainingArguments
from transformers import HfArgumentParser

from alc_hf.core.program import OptionRange, check_choice_option, check_option_ranges, nearest, unknown_arguments
from alc_hf.losses.alc import check_alc_options
from alc_hf.losses.tcm import check_tcm_margins
from alc_hf.models import DEFAULT_MODEL
from alc_hf.models.verifier import DEFAULT_MAX_LENGTH
from alc_hf.training.loss_composition import BACKBONES, check_hardness_options
from alc_hf.training.verifier import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_LEARNING_RATE,
    DEFAULT_NUM_MINED,
    DEFAULT_PATIENCE,
    DEFAULT_POS_WEIGHT,
)

BATCHING = ("random", "clustered")
# sentence-transformers' MultipleNegativesRankingLoss(hardness_mode=...): which negatives get the extra weight.
HARDNESS_MODES = ("in_batch_negatives", "hard_negatives", "all_negatives")
_AT_LEAST_0, _AT_LEAST_1, _POSITIVE = OptionRange(0), OptionRange(1), OptionRange(0, low_included=False)
# Every numeric option a run could misread, checked when the options are parsed: before any data is read or any model
# loaded (transformers would take --max_steps -3 for "no limit" and train a whole epoch). The loss's own options
# are checked by the loss modules' functions (LossArguments.__post_init__).
OPTION_RANGES: dict[str, OptionRange] = {
    "max_steps": OptionRange(1, special=(-1, "no limit: train for --num_train_epochs")),
    "num_train_epochs": _POSITIVE,
    "per_device_train_batch_size": _AT_LEAST_1,
    "per_device_eval_batch_size": _AT_LEAST_1,
    "gradient_accumulation_steps": _AT_LEAST_1,
    "learning_rate": _POSITIVE,
    "pair_head_learning_rate": _POSITIVE,
    "warmup_steps": _AT_LEAST_0,
    "weight_decay": _AT_LEAST_0,
    "max_grad_norm": _AT_LEAST_0,
    "logging_steps": _POSITIVE,
    "save_steps": _POSITIVE,
    "save_total_limit": _AT_LEAST_1,
    "max_seq_length": _AT_LEAST_1,
    "lora_r": _AT_LEAST_0,
    "lora_alpha": _POSITIVE,
    "lora_dropout": OptionRange(0, 1, high_included=False),
    "num_hard_negatives": _AT_LEAST_0,
    "max_positive_ids": _AT_LEAST_1,
    "max_train_samples": _AT_LEAST_1,
    "cluster_size": _AT_LEAST_1,
    "pair_head_hidden_dim": _AT_LEAST_0,
    "mini_batch_size": _AT_LEAST_1,
    "hardness_strength": _AT_LEAST_0,
    "verifier_num_mined": _AT_LEAST_0,
    "verifier_max_train_samples": _AT_LEAST_1,
    "verifier_epochs": _POSITIVE,
    "verifier_learning_rate": _POSITIVE,
    "verifier_batch_size": _AT_LEAST_1,
    "verifier_max_length": _AT_LEAST_1,
    "verifier_patience": _AT_LEAST_1,
}


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        default=DEFAULT_MODEL, metadata={"help": "Local folder or Hub id; the default loads offline when installed."}
    )
    max_seq_length: int | None = field(default=None, metadata={"help": "Truncate inputs to this many tokens."})
    lora_r: int = field(default=0, metadata={"help": "Train a LoRA adapter of this rank instead of the encoder."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "Modules to adapt (default: PEFT's choice for the architecture)."}
    )

    def __post_init__(self) -> None:
        check_option_ranges(self, OPTION_RANGES)


@dataclass
class TrainingDataArguments:
    """How the training rows are made from the data and batched."""

    num_hard_negatives: int = field(default=0, metadata={"help": "Hard-negative columns per training row."})
    max_positive_ids: int = field(default=32, metadata={"help": "Positive label ids kept per row in `label`."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training rows."})
    one_row_per_query: bool = field(default=False, metadata={"help": "One random positive per query per epoch."})
    batching: str = field(
        default="clustered",
        metadata={"help": "'random', or 'clustered': rows whose queries the encoder places close share a batch."},
    )
    cluster_size: int = field(default=4, metadata={"help": "Rows per cluster with clustered batching."})

    def __post_init__(self) -> None:
        check_choice_option("batching", self.batching, BATCHING)
        check_option_ranges(self, OPTION_RANGES)


@dataclass
class LossArguments:
    """Exactly :func:`build_loss`'s options: ``build_loss(model, **asdict(loss_args))``."""

    base_loss: str = field(
        default="softmax", metadata={"help": f"Backbone: one of {tuple(BACKBONES)} (mnrl: MultipleNegativesRanking)."}
    )
    alc: bool = field(
        default=True,
        metadata={
            "help": "Add the ALC pair-head objectives (L_ql and L_qb); they train the pair head. Their coverage gain "
            "over TCM alone was within the seed spread at batch 32 on the sets measured, and nil at batch 128 on WDC "
            "(docs/benchmarks.md)."
        },
    )
    ql_weight: float = field(default=1.0, metadata={"help": "β1, weight of L_ql."})
    qb_weight: float = field(default=1.0, metadata={"help": "β2, weight of L_qb."})
    num_negatives: int = field(default=2, metadata={"help": "k, hardest in-batch negatives for L_qb."})
    pair_head_hidden_dim: int | None = field(
        default=None, metadata={"help": "Hidden width of the pair head (default: the embedding size; 0: one Linear)."}
    )
    head_warmup_steps: int = field(
        default=0, metadata={"help": "Steps during which the pair head learns on detached embeddings."}
    )
    tcm: bool = field(default=True, metadata={"help": "Add the TCM regulariser."})
    pos_margin: float = field(default=0.9, metadata={"help": "TCM m+."})
    neg_margin: float = field(default=0.5, metadata={"help": "TCM m-."})
    hardness_mode: str | None = field(
        default=None,
        metadata={
            "help": "With --base_loss mnrl, weight its hardest negatives (sentence-transformers 6.2): one of "
            f"{HARDNESS_MODES}."
        },
    )
    hardness_strength: float = field(
        default=0.0, metadata={"help": "With --hardness_mode, the weight α of α·cos on those negatives' logits."}
    )
    mini_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "Embed each batch this many texts at a time and cache the gradients (CachedLoss): any "
            "--per_device_train_batch_size fits in memory, with the same loss and gradients, for a second encoder pass."
        },
    )

    def __post_init__(self) -> None:
        check_choice_option("base_loss", self.base_loss, tuple(BACKBONES))
        check_option_ranges(self, OPTION_RANGES)
        check_alc_options(self.ql_weight, self.qb_weight, self.num_negatives, self.head_warmup_steps)
        check_tcm_margins(self.pos_margin, self.neg_margin)
        if self.hardness_mode is not None:
            check_choice_option("hardness_mode", self.hardness_mode, HARDNESS_MODES)
        check_hardness_options(self.base_loss, self.hardness_mode)


@dataclass
class VerifierArguments:
    train_verifier: bool = field(
        default=False,
        metadata={"help": "After the bi-encoder, train a cross-encoder verifier on negatives mined with it."},
    )
    verifier_model: str = field(
        default=DEFAULT_MODEL, metadata={"help": "Encoder (gets a new head) or cross-encoder the verifier starts from."}
    )
    verifier_num_mined: int = field(default=DEFAULT_NUM_MINED, metadata={"help": "Negatives mined per query."})
    verifier_max_train_samples: int | None = field(
        default=None, metadata={"help": "Train the verifier on a random subset of N pairs (a quick run)."}
    )
    verifier_epochs: float = field(
        default=DEFAULT_EPOCHS, metadata={"help": "Epochs; with --verifier_select_on_calibration, the most."}
    )
    verifier_select_on_calibration: bool = field(
        default=False,
        metadata={
            "help": "Keep the verifier's epoch with the best pairwise F1 on the calibration split's pairs (its "
            "positives, labelled negatives and negatives mined as for training), stop after --verifier_patience "
            "epochs without a better one."
        },
    )
    verifier_patience: int = field(
        default=DEFAULT_PATIENCE,
        metadata={"help": "With --verifier_select_on_calibration, epochs without a better F1 before stopping."},
    )
    verifier_learning_rate: float = field(default=DEFAULT_LEARNING_RATE, metadata={"help": "The verifier's."})
    verifier_pos_weight: str = field(
        default=str(DEFAULT_POS_WEIGHT), metadata={"help": "Weight of the positive class: a number or 'balanced'."}
    )
    verifier_batch_size: int = field(default=DEFAULT_BATCH_SIZE, metadata={"help": "Pairs per training batch."})
    verifier_max_length: int = field(
        default=DEFAULT_MAX_LENGTH, metadata={"help": "Tokens of a (query, label) pair; longer pairs are cut."}
    )

    def __post_init__(self) -> None:
        check_option_ranges(self, OPTION_RANGES)
        if self.verifier_pos_weight != "balanced" and not _is_positive_number(self.verifier_pos_weight):
            raise ValueError(f"--verifier_pos_weight {self.verifier_pos_weight!r}: expected a number > 0 or 'balanced'")


@dataclass
class ALCTrainingArguments(SentenceTransformerTrainingArguments):
    """sentence-transformers' training arguments, the pair head's own learning rate (it starts from scratch and
    learns too slowly at an encoder's fine-tuning rate), and whether an earlier run in ``output_dir`` is replaced."""

    pair_head_learning_rate: float = field(
        default=1e-3, metadata={"help": "Learning rate of the ALC pair head (the encoder's is --learning_rate)."}
    )
    # transformers 5 dropped this option; the recipe keeps its meaning (alc_hf.training.output_dir).
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Replace an earlier run in --output_dir (else the recipe refuses to mix two runs)."},
    )
    evaluate_before_training: bool = field(default=True, metadata={"help": "Measure coverage before training too."})

    def __post_init__(self) -> None:
        check_option_ranges(self, OPTION_RANGES)  # before transformers reads them
        super().__post_init__()


def _is_positive_number(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


# The recipe's defaults for a first run on a CPU (``HfArgumentParser.set_defaults``); any can be given.
RECIPE_DEFAULTS = {
    "output_dir": "outputs/train_alc",
    "per_device_train_batch_size": 64,
    "num_train_epochs": 1,
    "learning_rate": 5e-5,
    "warmup_steps": 0.1,  # below 1: a share of the steps (transformers 5 deprecates warmup_ratio)
    "logging_steps": 10,
    "save_strategy": "no",
    "report_to": "none",
}
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
CONFIG_FLAG = "--config"


def recipe_parser(dataclass_types: Sequence[type]) -> HfArgumentParser:
    """The train program's parser: every option of ``dataclass_types``, with the recipe's defaults."""
    parser = HfArgumentParser(
        dataclass_types,
        prog="alc-hf train",
        allow_abbrev=False,  # a misspelt option is an error, never taken for the option it abbreviates
        description=f"Options also come from a YAML or JSON file: `alc-hf train config.yaml [options]` or "
        f"`{CONFIG_FLAG} config.yaml`; the command line overrides the file.",
    )
    parser.set_defaults(**RECIPE_DEFAULTS)
    return parser


def parse_recipe_arguments(dataclass_types: Sequence[type], argv: Sequence[str] | None = None) -> tuple[Any, ...]:
    """The recipe's dataclasses from ``[config.yaml] [--config config.yaml] [--option value ...]``.

    The precedence is the recipe's defaults (:data:`RECIPE_DEFAULTS`), then the file's values, then the command
    line: ``train_alc.py recipes/catalog_alc.yaml --max_steps 2`` runs the file's setup for 2 steps. The file is a
    mapping of option names (as on the command line, without ``--``) to values; an unknown name is an error that
    names the file and the key."""
    config_file, argv = split_config_file(list(sys.argv[1:] if argv is None else argv))
    parser = recipe_parser(dataclass_types)
    if config_file is not None:
        parser.set_defaults(**read_config_file(config_file, parser))
    # No ``train_alc.args`` file beside the script is read: options come from the command line and the config only.
    *options, unknown = parser.parse_args_into_dataclasses(
        args=argv, return_remaining_strings=True, look_for_args_file=False
    )
    if unknown:
        known = [option for action in parser._actions for option in action.option_strings]
        raise ValueError(f"{unknown_arguments(unknown, known)} (see --help)")
    return tuple(options)


def split_config_file(argv: list[str]) -> tuple[Path | None, list[str]]:
    """The config file named by a first positional ``*.yaml|*.yml|*.json`` or by ``--config FILE``, and the other
    arguments."""
    files, rest = [], []
    arguments = iter(argv)
    for position, argument in enumerate(arguments):
        if position == 0 and not argument.startswith("-") and argument.endswith(CONFIG_SUFFIXES):
            files.append(argument)
        elif argument == CONFIG_FLAG:
            value = next(arguments, None)
            if value is None:
                raise ValueError(f"{CONFIG_FLAG} needs a file name")
            files.append(value)
        elif argument.startswith(f"{CONFIG_FLAG}="):
            files.append(argument[len(CONFIG_FLAG) + 1 :])
        else:
            rest.append(argument)
    if len(files) > 1:
        raise ValueError(f"one config file at a time, got {files}")
    if not files:
        return None, rest
    path = Path(files[0])
    if path.suffix not in CONFIG_SUFFIXES:
        raise ValueError(f"config file {path}: expected one of {CONFIG_SUFFIXES}, got {path.suffix or 'no suffix'}")
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    return path, rest


def read_config_file(path: Path, parser: HfArgumentParser) -> dict[str, Any]:
    """The option values in a YAML or JSON file, checked against the options ``parser`` knows."""
    text = path.read_text(encoding="utf-8")
    try:
        values = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"config file {path} cannot be read: {error}") from error
    values = {} if values is None else values
    if not isinstance(values, dict):
        raise ValueError(
            f"config file {path}: expected a mapping of option names to values, found a {type(values).__name__}"
        )
    actions = {action.dest: action for action in parser._actions if action.dest != "help"}
    for key, value in values.items():
        if key not in actions:
            hint = nearest(str(key), actions) or " (the options are those of --help, without --)"
            raise ValueError(f"config file {path}: unknown option {key!r}{hint}")
        takes_list = actions[key].nargs in ("+", "*")
        if isinstance(value, list) and not takes_list:
            raise ValueError(f"config file {path}: option {key!r} takes one value, got the list {value}")
        if takes_list and value is not None and not isinstance(value, list):
            values[key] = [value]
    return values
