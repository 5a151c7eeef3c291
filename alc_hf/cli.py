"""The ``alc-hf`` command.

alc-hf train [config.yaml] [--option value ...]        fine-tune with ALC + TCM (alc-hf train --help: every option)
alc-hf evaluate [MODEL] [--data catalog|wdc|tables|xmc|beir|pairs] [--data_dir DIR] [--text_fields F ...]
    [--query_column C --label_column C ...] [--evaluation_view corpus|labelled] [--output_dir DIR]
alc-hf certify [MODEL] --data ... --split SPLIT --budget N [--sheet labels.csv] [--target_precision 0.9]
alc-hf certify --labels labels.csv
alc-hf match MODEL --catalog products.csv --queries new.csv --output decisions.csv [--threshold T] [--audit N]

Every option shared with the train program is declared once (:mod:`alc_hf.data.options`,
:mod:`alc_hf.evaluation.options`); each command's own are the dataclasses below. ``alc-hf --help`` imports nothing
beyond the standard library: a command's options are read only when it runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alc_hf.core.program import (
    DEBUG_ENVIRONMENT_VARIABLE,
    OptionRange,
    check_choice_option,
    check_option_ranges,
    run_program,
    unknown_arguments,
)

if TYPE_CHECKING:
    from alc_hf.evaluation.certification_sheet import CertificationPlan

COMMANDS = {
    "train": "fine-tune a bi-encoder with ALC + TCM, measure coverage before and after, save the model folder",
    "evaluate": "coverage of a saved model at thresholds calibrated on one split and applied to another",
    "certify": "a threshold whose precision on your own traffic is guaranteed, from a few labelled top-1 predictions",
    "match": "accept or send to review every new query, by the model's certified (or given) threshold",
}
DESCRIPTIONS = {
    "evaluate": "Embed a dataset's calibration and test splits with a saved model, calibrate a threshold per target "
    "precision on the calibration split, apply it to test, print a table and write JSON and PNG.",
    "certify": "Step 1, `alc-hf certify MODEL --data ... --split S --budget N --sheet labels.csv`: retrieve the "
    "top-1 of every query of the split S (your traffic; its labels, if any, are not used) and write the N "
    "predictions a person labels, drawn at random, as a CSV with an empty `correct` column. Step 2, `alc-hf certify "
    "--labels labels.csv` once the column is filled in: the threshold with the most coverage whose precision on that "
    "traffic is at least the target with probability 1 - delta, the coverage it gives, and a next round of rows to "
    "label when more could certify a looser threshold.",
    "match": "Index the catalog (once: the index is saved under a fingerprint of the model and the catalog), decide "
    "every query of the file: its top-1 product and accept score, `accept` when the score reaches the threshold "
    "the model folder carries (its certification, else its report's calibrated one, said to be uncertified; or "
    "--threshold), else `review` with the top-k candidates. Writes the decisions atomically, a summary, and with "
    "--audit N a sheet of N accepted decisions for `alc-hf certify --labels`.",
}
# `alc-hf certify --starts`: strictest, or several (alc_hf.core.metrics.certify.START_SHARES besides the strictest).
CERTIFY_STARTS = ("strictest", "several")
MODEL_HELP = "saved model folder or Hub id (default: sentence-transformers/all-MiniLM-L6-v2, offline when installed)"

# Checked when the options are parsed, before any data is read or any model loaded.
RANGES = {
    "per_device_eval_batch_size": OptionRange(1),
    "target_precision": OptionRange(0, 1, low_included=False),
    "budget": OptionRange(1),
    "max_rounds": OptionRange(1),
    "max_coverage": OptionRange(0, 1, low_included=False),
}


@dataclass
class SavedModelArguments:
    """How ``evaluate``, ``certify`` and ``match`` run a saved model."""

    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Texts per batch when embedding."})
    backend: str = field(
        default="torch",
        metadata={
            "help": "What runs the bi-encoder: torch, onnx (onnxruntime, the same scores) or onnx-int8 (most linear "
            "layers in int8: about 2x faster on a CPU, the scores move slightly). A threshold holds for the backend "
            "it was certified with."
        },
    )
    index_dir: str = field(
        default="alc_hf_index",
        metadata={"help": "Where catalog indexes and exported encoders are saved and reused from."},
    )
    device: str | None = field(default=None, metadata={"help": "e.g. cpu or cuda (default: sentence-transformers')."})
    verifier: str | None = field(
        default=None,
        metadata={
            "help": "A saved cross-encoder that decides acceptance from the texts (default: MODEL/verifier when the "
            "train program saved one there)."
        },
    )
    debug: bool = field(
        default=False,
        metadata={"help": f"Show the traceback of an error, not only its message (as {DEBUG_ENVIRONMENT_VARIABLE}=1)."},
    )

    def __post_init__(self) -> None:
        check_option_ranges(self, RANGES)
        from alc_hf.models.onnx_encoder import BACKENDS

        check_choice_option("backend", self.backend, BACKENDS)


@dataclass
class EvaluateArguments:
    output_dir: str = field(default="coverage_evaluation", metadata={"help": "Where coverage.json and .png go."})
    accept_scores: list[str] | None = field(
        default=None,
        metadata={
            "help": "What decides acceptance, the first being the main report (default: cosine; pair_head and "
            "combined when the model folder holds the ALC pair head it was trained with; verifier and "
            "verifier_rerank with a verifier)."
        },
    )


@dataclass
class CertifyArguments:
    labels: str | None = field(default=None, metadata={"help": "Step 2: the labelled sheet to certify from."})
    split: str | None = field(default=None, metadata={"help": "Step 1: the split that plays the traffic (e.g. test)."})
    budget: int | None = field(default=None, metadata={"help": "Step 1: predictions to label per round."})
    sheet: str = field(default="certification/labels.csv", metadata={"help": "Step 1: the sheet to write."})
    target_precision: float = field(
        default=0.9, metadata={"help": "The precision to certify, in (0, 1]; 1 only by a census (every row labelled)."}
    )
    max_rounds: int = field(default=1, metadata={"help": "Rounds of --budget labels at most (they share --delta)."})
    max_coverage: float = field(
        default=1.0,
        metadata={"help": "The most coverage looked for: labels are drawn from the best-scored share of the traffic."},
    )
    accept_score: str = field(default="cosine", metadata={"help": "The score to threshold."})
    draw_seed: int = field(default=0, metadata={"help": "Seed of the random draw of the rows to label."})
    starts: str = field(
        default="strictest",
        metadata={
            "help": "Where the test sequences start: strictest (one sequence, all of --delta: best when precision "
            "falls from the top, as on every real traffic measured here) or several (also above a quarter, half and "
            "three quarters of the region, --delta shared: for a top a little under the target, where one sequence "
            "stops at once). Choose on a labelled split, never on the traffic's labels."
        },
    )
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "Start a new sheet and plan where some exist: those are kept as <sheet>.earlier-<k>; re-planning "
            "the same traffic after seeing its labels voids the guarantee."
        },
    )

    def __post_init__(self) -> None:
        check_option_ranges(self, RANGES)
        check_choice_option("starts", self.starts, CERTIFY_STARTS)


@dataclass
class MatchArguments:
    catalog: str | None = field(
        default=None,
        metadata={
            "help": "The catalog: a .csv, .jsonl or .parquet file of products; or leave it out and name a dataset "
            "folder with --data and --data_dir, whose labels (e.g. tableB.csv) are the catalog."
        },
    )
    catalog_id_column: str = field(default="id", metadata={"help": "The catalog's column of product ids."})
    catalog_text_column: str = field(default="text", metadata={"help": "The catalog's column of product texts."})
    queries: str | None = field(
        default=None, metadata={"help": "The new queries: a .csv, .jsonl or .parquet file of any size (required)."}
    )
    output: str = field(default="decisions.csv", metadata={"help": "Where the decisions go: .csv, .jsonl or .parquet."})
    threshold: float | None = field(
        default=None, metadata={"help": "Accept above this score instead of the model folder's threshold."}
    )
    accept_score: str | None = field(
        default=None,
        metadata={"help": "The score to threshold: chooses among the folder's certifications (default: cosine)."},
    )
    target_precision: float | None = field(
        default=None, metadata={"help": "Chooses among the folder's certifications (default: the only one, or 0.9)."}
    )
    top_k: int = field(default=5, metadata={"help": "Candidates kept per query (a person chooses from them)."})
    index_kind: str = field(
        default="auto",
        metadata={"help": "auto (exact up to 200,000 products, IVF above), flat, hnsw or ivf."},
    )
    chunk_size: int = field(default=4096, metadata={"help": "Queries decided at a time (bounds the memory)."})
    audit: int = field(
        default=0, metadata={"help": "Write a sheet of N accepted decisions drawn at random, for a person to check."}
    )
    audit_seed: int = field(default=0, metadata={"help": "Seed of the audit's draw."})

    def __post_init__(self) -> None:
        check_option_ranges(self, MATCH_RANGES)


MATCH_RANGES = {
    "target_precision": OptionRange(0, 1, low_included=False, high_included=False),
    "top_k": OptionRange(1),
    "chunk_size": OptionRange(1),
    "audit": OptionRange(0),
}


def _command_parser(command: str) -> Any:
    """The parser of ``alc-hf evaluate``, ``certify`` or ``match``: the shared dataclasses, the command's own, and
    MODEL. No abbreviation is taken: argparse would read a misspelt --query_colum as --query_column without a word."""
    from transformers import HfArgumentParser

    from alc_hf.data.options import DataArguments
    from alc_hf.evaluation.accept import ACCEPT_SCORES
    from alc_hf.evaluation.matcher import MATCH_SCORES
    from alc_hf.evaluation.options import CalibrationArguments, RetrievalArguments, RiskArguments

    types = {
        "evaluate": (
            DataArguments,
            RetrievalArguments,
            SavedModelArguments,
            CalibrationArguments,
            RiskArguments,
            EvaluateArguments,
        ),
        "certify": (DataArguments, RetrievalArguments, SavedModelArguments, RiskArguments, CertifyArguments),
        "match": (DataArguments, SavedModelArguments, MatchArguments),
    }[command]
    parser = HfArgumentParser(types, prog=f"alc-hf {command}", description=DESCRIPTIONS[command], allow_abbrev=False)
    parser.add_argument("model", nargs="?", default=None, help=MODEL_HELP)
    for action in parser._actions:
        if action.dest in ("accept_scores", "accept_score"):
            action.choices = MATCH_SCORES if command == "match" else ACCEPT_SCORES
    return parser


def _parse_command(command: str, argv: list[str]) -> argparse.Namespace:
    """The options of ``command`` as one namespace (with ``data``'s :meth:`~DataArguments.source` as ``source``);
    an unknown option is argparse's error, naming the nearest known one."""
    parser = _command_parser(command)
    *options, extra, remaining = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if remaining:
        known = [option for action in parser._actions for option in action.option_strings]
        parser.error(unknown_arguments(remaining, known))
    values = {name: value for each in options for name, value in vars(each).items()}
    source = options[0].source() if hasattr(options[0], "source") else None
    return argparse.Namespace(**values, model=extra.model, source=source)


def _accept_models(args: argparse.Namespace) -> tuple[object, object]:
    """The verifier (``--verifier``, or ``MODEL/verifier`` when the recipe saved one there; loaded first, before any
    data is read) and the ALC pair head saved with the model, each None when there is none."""
    from alc_hf.losses.pair_head import saved_pair_head
    from alc_hf.models import resolve_model_path
    from alc_hf.models.verifier import load_verifier

    verifier_path = args.verifier or (
        Path(args.model) / "verifier" if (Path(args.model) / "verifier").is_dir() else None
    )
    verifier = None if verifier_path is None else load_verifier(verifier_path, device=args.device)
    return verifier, saved_pair_head(resolve_model_path(args.model))


def _encoder(args: argparse.Namespace) -> Any:
    """The bi-encoder of ``args.model`` on ``args.backend`` (loaded first: a model that cannot load fails early)."""
    from alc_hf.evaluation.matcher import load_backend, model_fingerprint
    from alc_hf.models import load_encoder, resolve_model_path

    model = load_encoder(args.model, device=args.device)
    if args.backend == "torch":  # the fingerprint hashes the model's files: only an export needs it
        return model
    return load_backend(model, model_fingerprint(resolve_model_path(args.model)), args.backend, args.index_dir)


def _evaluate(args: argparse.Namespace) -> None:
    from alc_hf.data.loading import load_evaluation_views
    from alc_hf.evaluation import CoverageEvaluator
    from alc_hf.evaluation.outputs import write_reports
    from alc_hf.evaluation.report import accept_score_caveats, accept_score_table
    from alc_hf.models import DEFAULT_MODEL

    args.model = args.model or DEFAULT_MODEL
    verifier, pair_head = _accept_models(args)
    calibration, test = load_evaluation_views(**args.source, view=args.evaluation_view)
    evaluator = CoverageEvaluator(
        calibration,
        test,
        target_precisions=args.target_precisions,
        calibration_method=args.calibration_method,
        delta=args.delta,
        batch_size=args.per_device_eval_batch_size,
        show_progress_bar=True,
        pair_head=pair_head,
        verifier=verifier,
        rerank_depth=args.rerank_depth,
        accept_scores=args.accept_scores,
    )
    model = _encoder(args)
    evaluator(model)
    written = write_reports(evaluator.last_reports, args.output_dir, model_name=args.model)
    print(f"\nModel {args.model} on {args.data}{' ' + args.data_dir if args.data_dir else ''}:\n")
    print(evaluator.last_report.table())
    if len(evaluator.last_reports) > 1:
        print("\nAccepted by each score (same retrieval, thresholds calibrated alike):\n")
        print(accept_score_table(evaluator.last_reports))
        others = dict(list(evaluator.last_reports.items())[1:])
        print("\n".join(accept_score_caveats(others)) or "(no caveat for the other accept scores)")
    print(f"\nWrote {', '.join(str(path) for path in written)}")


def _certify(args: argparse.Namespace, given: set[str]) -> None:
    if args.labels is not None:
        # Everything step 1 decides is in the plan: an option here would be silently ignored.
        ignored = sorted(given - {"labels", "debug"})
        if ignored:
            shown = " ".join("MODEL" if name == "model" else f"--{name}" for name in ignored)
            raise ValueError(
                f"--labels certifies from a sheet and its plan alone, as step 1 planned it: drop {shown} (to certify "
                "otherwise, write a new sheet with step 1)"
            )
        _certify_from_labels(Path(args.labels))
    else:
        missing = [f"--{name}" for name in ("split", "budget") if getattr(args, name) is None]
        if missing:
            raise ValueError(f"certify needs {' and '.join(missing)} to write a sheet (or --labels SHEET to read one)")
        _write_certification_sheet(args)


def _write_certification_sheet(args: argparse.Namespace) -> None:
    from alc_hf.core.metrics.certify import START_SHARES
    from alc_hf.data.loading import load_evaluation_view, load_evaluation_views
    from alc_hf.evaluation import CoverageEvaluator
    from alc_hf.evaluation.accept import FITTED_SCORES
    from alc_hf.evaluation.certification_sheet import (
        LABEL_SPELLINGS,
        keep_earlier_plan,
        plan_certification,
        plan_path,
        write_sheet,
    )
    from alc_hf.models import DEFAULT_MODEL

    model_name = args.model or DEFAULT_MODEL
    args.model = model_name
    sheet = Path(args.sheet)
    plan_file = plan_path(sheet)
    existing = [str(path) for path in (sheet, plan_file) if path.exists()]
    if existing and not args.overwrite:
        raise FileExistsError(
            f"{' and '.join(existing)} already exist (a person's labels may be in the sheet): pass --overwrite to "
            "replace them, or choose another --sheet"
        )
    verifier, pair_head = _accept_models(args)
    traffic = load_evaluation_view(split=args.split, view=args.evaluation_view, **args.source)
    # Only the combined scores are fitted on a calibration split; the other scores rank the traffic on their own.
    calibration = traffic
    if args.accept_score in FITTED_SCORES:
        calibration = load_evaluation_views(**args.source, view=args.evaluation_view)[0]
    evaluator = CoverageEvaluator(
        calibration,
        traffic,
        precision_at_k=(1,),
        batch_size=args.per_device_eval_batch_size,
        show_progress_bar=True,
        pair_head=pair_head,
        verifier=verifier,
        rerank_depth=args.rerank_depth,
        accept_scores=(args.accept_score,),
    )
    top = evaluator.compute_predictions(_encoder(args))[args.accept_score][1]
    ids = top.ids[:, 0]
    plan = plan_certification(
        top.scores[:, 0],
        traffic.queries,
        [traffic.corpus[i] if i >= 0 else "" for i in ids],
        model=model_name,
        traffic=f"{args.data}{' ' + args.data_dir if args.data_dir else ''} [{args.split}]",
        accept_score=args.accept_score,
        target_precision=args.target_precision,
        delta=args.delta,
        budget=args.budget,
        max_rounds=args.max_rounds,
        max_coverage=args.max_coverage,
        seed=args.draw_seed,
        model_dir=str(Path(model_name).resolve()) if Path(model_name).is_dir() else None,
        backend=args.backend,
        start_shares=START_SHARES if args.starts == "several" else (),
    )
    if existing:
        kept, earlier = keep_earlier_plan(sheet)
        said = " and ".join(str(path) for path in kept)
        if earlier is not None and (earlier.traffic, earlier.accept_score) == (plan.traffic, plan.accept_score):
            plan = dataclasses.replace(plan, earlier_plans=[*earlier.earlier_plans, kept[-1].name])
            print(
                f"\nWARNING: this re-plans the certification of {plan.traffic}; the earlier sheet and plan are kept as "
                f"{said}. If anything their labels showed chose this plan (another --draw_seed, --max_coverage or "
                "--budget after seeing them), the guarantee does not hold: plan once, before any label. The new plan "
                "records the one it replaces."
            )
        else:
            print(f"\nThe earlier files are kept as {said}.")
    plan.save(plan_file)
    write_sheet(plan, sheet, 1, [])
    rows = len(plan.rows(1))
    if args.budget > len(plan.order):
        print(
            f"\nNote: --budget {args.budget} is more than the {len(plan.order)} predictions scoring at least "
            f"{plan.region_threshold:.4f} (the region labels are drawn from): the sheet holds all {rows} of them."
        )
    print(
        f"\nWrote {sheet} ({rows} top-1 predictions of {len(plan.scores)} traffic queries, drawn at random from the "
        f"{len(plan.order)} scoring at least {plan.region_threshold:.4f}) and its plan {plan_file}.\n"
        f"Fill in its 'correct' column for every row ({LABEL_SPELLINGS}), then run: alc-hf certify --labels {sheet}"
    )


def _certify_from_labels(sheet: Path) -> None:
    from alc_hf.core.files import write_atomically
    from alc_hf.evaluation.certification_sheet import certification_record, certify_sheet, why_not_looser, write_sheet

    plan, labels, certification, latest = certify_sheet(sheet)
    confidence = f"{1 - plan.delta:.0%}"
    if plan.earlier_plans:
        print(
            f"Caution: this plan replaced {', '.join(plan.earlier_plans)} for the same traffic. The guarantee holds "
            "only if nothing seen in those (labels above all) chose this plan."
        )
    if certification.certified:
        guarantee = (
            f"its precision is {certification.labelled_precision:.3f}: every prediction above it is labelled"
            if certification.census
            else f"its precision is at least {plan.target_precision:g} with probability {confidence}"
        )
        print(
            f"Certified: accept the top-1 when its {plan.accept_score} score is at least {certification.threshold!r}."
            f"\nOn {plan.traffic}, {guarantee}; it accepts {certification.num_accepted} of the "
            f"{certification.num_predictions} queries (coverage {certification.coverage:.3f}).\n"
            f"Labels used: {certification.num_labelled} in {math.ceil(certification.num_labelled / plan.round_size)} "
            f"round(s) of the {labels.rounds} labelled (the loosest any round certifies), "
            f"{certification.num_labelled_accepted} of them above the threshold, "
            f"{certification.labelled_precision:.3f} correct."
        )
    else:
        print(
            f"No threshold is certified for precision {plan.target_precision:g} at {confidence} from "
            f"{certification.num_labelled} labels in {labels.rounds} round(s): accept nothing automatically.\n"
            f"Why: {why_not_looser(certification)} (each round is tested at delta {plan.round_delta:g})."
        )
    record = certification_record(plan, labels, certification, sheet)
    written = sheet.with_name(f"{sheet.stem}.certification.json")
    write_atomically(written, json.dumps(record, indent=2, allow_nan=False).encode())
    print(f"Wrote {written}")
    _record_in_model_folder(plan, record, written)
    waiting = len(labels.rows) > labels.rounds * plan.round_size
    if latest.next_undecided and labels.rounds < plan.num_rounds_possible:
        if not waiting:
            write_sheet(plan, sheet, labels.rounds + 1, labels.rows)
        print(
            f"A looser threshold is still undecided ({why_not_looser(latest)}): round {labels.rounds + 1}'s "
            f"{len(plan.rows(labels.rounds + 1))} rows are in {sheet}. Label them and run this again."
        )
    elif latest.next_undecided:
        print(
            f"A looser threshold is still undecided ({why_not_looser(latest)}), and every planned round is used: more "
            "labels need a new plan."
        )


def _record_in_model_folder(plan: CertificationPlan, record: dict, written: Path) -> None:
    """Keep the certification in the model folder's ``certifications.json`` beside the others and rewrite the card's
    section from them, saying what a new one replaces; a model that is no local folder is told so."""
    from alc_hf.core.files import write_atomically
    from alc_hf.evaluation.certification_sheet import (
        CERTIFICATIONS_FILE,
        certifications_card_section,
        record_certification,
        replace_card_section,
    )

    # Plans written before the model folder was recorded name it as given.
    model_dir = plan.model_dir or (str(Path(plan.model).resolve()) if Path(plan.model).is_dir() else None)
    if model_dir is None:
        print(
            f"The model {plan.model} is not a local folder: its card was not written; the certification is in "
            f"{written}."
        )
        return
    if not Path(model_dir).is_dir():
        print(f"The model folder {model_dir} is gone: its card was not written; the certification is in {written}.")
        return
    records, replaced = record_certification(model_dir, record)
    if replaced is not None:
        old = replaced["certification"]["threshold"]
        print(
            f"This replaces the model's certification of {replaced['certified_at']} for the same traffic, accept "
            f"score, target and delta (sheet {replaced['sheet']}, threshold "
            f"{'none' if old is None else f'{old:.6f}'}); the {len(records) - 1} other(s) are kept."
        )
    card = Path(model_dir) / "README.md"
    if card.is_file():
        section = certifications_card_section(records)
        write_atomically(card, replace_card_section(card.read_text(encoding="utf-8"), section).encode())
    print(
        f"Wrote the certification into {Path(model_dir) / CERTIFICATIONS_FILE}"
        + (f" and the model card {card} ({len(records)} certification(s))" if card.is_file() else " (no card there)")
    )


def _match(args: argparse.Namespace) -> None:
    from tqdm.auto import tqdm

    from alc_hf.data.loading import load_query_label_data
    from alc_hf.data.records import RecordChunk, read_catalog, record_count
    from alc_hf.evaluation.decisions import barrier, match_file, process_shard, summary_path
    from alc_hf.evaluation.matcher import Matcher

    missing = ["MODEL"] if args.model is None else []
    if args.queries is None:
        missing.append("--queries")
    if args.catalog is None and args.data_dir is None:
        missing.append("--catalog (or --data and --data_dir)")
    if missing:
        raise ValueError(f"match needs {', '.join(missing)}")
    if Path(args.output).exists():
        print(f"Note: {args.output} exists and is replaced once the new decisions are complete.")
    # Cheap checks first: the catalog and the threshold, before the model is loaded.
    if args.catalog is not None:
        catalog = read_catalog(args.catalog, args.catalog_id_column, args.catalog_text_column)
    else:  # a dataset folder's labels, known by their position
        labels = load_query_label_data(**args.source).labels
        catalog = RecordChunk([str(i) for i in range(len(labels))], labels, [])
    matcher = Matcher.from_model_dir(
        args.model,
        accept_score=args.accept_score,
        target_precision=args.target_precision,
        threshold=args.threshold,
        device=args.device,
        top_k=args.top_k,
        batch_size=args.per_device_eval_batch_size,
        verifier_path=args.verifier,
        backend=args.backend,
        cache_dir=args.index_dir,
    )
    rank, world = process_shard()
    say = print if rank == 0 else (lambda *_, **__: None)
    say(f"Rule: {matcher.rule.describe()}", flush=True)
    if rank > 0:
        barrier()  # the first process builds (or reuses) and saves the index; the others then read it
    reused = matcher.index(catalog.ids, catalog.texts, args.index_dir, args.index_kind, show_progress_bar=rank == 0)
    if rank == 0 and world > 1:
        barrier()
    say(f"Catalog: {len(catalog.ids):,} products, {matcher.index_kind} index {'reused' if reused else 'built'}.")
    total = record_count(args.queries)  # known for Parquet: the bar then shows an ETA too
    with tqdm(desc=f"Deciding{f' (process {rank})' if world > 1 else ''}", unit=" queries", total=total) as bar:
        summary = match_file(
            matcher,
            args.queries,
            args.output,
            args.query_id_column or "id",
            args.query_column or "text",
            args.chunk_size,
            audit=args.audit,
            seed=args.audit_seed,
            progress=lambda done: bar.update(done - bar.n),
        )
    if summary is None:
        return
    bound = summary.precision_lower_bound
    print(
        f"\n{summary.queries:,} queries: {summary.accepted:,} accepted ({summary.accepted_share:.1%}), the rest to "
        f"review; {summary.queries_per_second:,.0f} queries/s.\n"
        + (
            f"The certified precision bound it relies on: {bound:.3f} (on the traffic it was certified on).\n"
            if bound is not None
            else f"No certified precision bound: the threshold is {summary.source}.\n"
        )
        + (f"WARNING: {summary.shift} Re-certify before trusting the threshold.\n" if summary.shift_warning else "")
        + (
            f"Audit sheet: {summary.audit_sheet} (fill in `correct`, then alc-hf certify --labels it).\n"
            if summary.audit_sheet
            else ""
        )
        + f"Wrote {args.output} and {summary_path(Path(args.output))}"
    )


def _given_options(command: str, command_argv: Sequence[str]) -> set[str]:
    """The ``dest`` of each option written in ``command_argv`` (``model`` for a MODEL): a default cannot be told
    from a value given. argparse sets a default only where the namespace has no value yet, so each starts as a
    marker that only a given value replaces (an absent optional positional gets its default, None)."""
    parser = _command_parser(command)
    unset = object()
    namespace = argparse.Namespace(**{action.dest: unset for action in parser._actions})
    parser.parse_known_args(list(command_argv), namespace)
    return {name for name, value in vars(namespace).items() if value is not unset and value is not None}


def _top_parser() -> argparse.ArgumentParser:
    """``alc-hf COMMAND ...``: the commands, each parsed by its own parser once chosen."""
    parser = argparse.ArgumentParser(
        prog="alc-hf",
        description="Train, measure and certify embedding models whose similarity threshold can be trusted.",
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _top_parser().parse_args(argv[:1]).command
    rest = argv[1:]
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if command == "train":
        from alc_hf.training.train import main as train

        return run_program(lambda: train(rest), "alc-hf train")
    debug = "--debug" in rest or any(argument.startswith("--debug=") for argument in rest)
    if command in ("evaluate", "match"):
        run = _evaluate if command == "evaluate" else _match
        return run_program(lambda: run(_parse_command(command, rest)), f"alc-hf {command}", debug=debug)
    given = _given_options(command, rest)
    return run_program(lambda: _certify(_parse_command(command, rest), given), "alc-hf certify", debug=debug)


if __name__ == "__main__":
    sys.exit(main())
