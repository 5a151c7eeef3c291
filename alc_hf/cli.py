"""The ``alc-hf`` command.

alc-hf evaluate [MODEL] [--data catalog|wdc|tables|xmc|beir|pairs] [--data_dir DIR] [--text_fields F ...]
    [--query_column C --label_column C ...] [--view corpus|labelled] [--output_dir DIR]
alc-hf certify [MODEL] --data ... --split SPLIT --budget N [--sheet labels.csv] [--target_precision 0.9]
alc-hf certify --labels labels.csv
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from alc_hf.command_line import DEBUG_ENVIRONMENT_VARIABLE, OptionRange, check_ranges, run_program, unknown_arguments
from alc_hf.data.views import DATA_FORMAT_HELP, DATA_FORMATS, DATA_OPTION_HELP
from alc_hf.evaluation.accept import ACCEPT_SCORES, FITTED_SCORES
from alc_hf.metrics import CALIBRATION_METHODS
from alc_hf.models import DEFAULT_MODEL

if TYPE_CHECKING:
    from alc_hf.evaluation.certify import CertificationPlan


def _add_model_options(parser: argparse.ArgumentParser, model_required: bool = True) -> None:
    """The model, the data and how it is retrieved and scored: what ``evaluate`` and ``certify`` share."""
    parser.add_argument(
        "model",
        nargs="?",
        default=DEFAULT_MODEL if model_required else None,
        help=f"saved model folder or Hub id (default: {DEFAULT_MODEL}, offline when installed)",
    )
    parser.add_argument("--data", choices=DATA_FORMATS, default="catalog", help=DATA_FORMAT_HELP)
    parser.add_argument("--data_dir", help="folder of the data (every format but catalog)")
    for name, help_text in DATA_OPTION_HELP.items():
        parser.add_argument(f"--{name}", nargs="+" if name == "text_fields" else None, help=help_text)
    parser.add_argument(
        "--view",
        choices=("corpus", "labelled"),
        help="rank against every label, or only the labelled candidates (default: labelled for tables/wdc and for "
        "pairs with --relevance_column, corpus otherwise)",
    )
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="the built-in catalog's seed, and the seed of the random calibration half (xmc; beir or pairs without a "
        "calibration split)",
    )
    parser.add_argument("--device", help="e.g. cpu or cuda (default: sentence-transformers' choice)")
    parser.add_argument(
        "--verifier",
        help="a saved cross-encoder that decides acceptance from the texts (default: MODEL/verifier when the recipe "
        "saved one there)",
    )
    parser.add_argument("--rerank_depth", type=int, default=5, help="top predictions verifier_rerank re-ranks")
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show the traceback of an error, not only its message (as {DEBUG_ENVIRONMENT_VARIABLE}=1 does)",
    )


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The command line, and each command's own parser (whose options a misspelt one is compared with)."""
    # No abbreviations: argparse would take a misspelt --query_colum for --query_column without a word.
    parser = argparse.ArgumentParser(prog="alc-hf", description=__doc__.split("\n")[0], allow_abbrev=False)
    commands = parser.add_subparsers(dest="command", required=True)
    evaluate = commands.add_parser(
        "evaluate",
        allow_abbrev=False,
        help="coverage of a saved model at thresholds calibrated on one split and applied to another",
        description="Embed a dataset's calibration and test splits with a saved model, calibrate a threshold per "
        "target precision on the calibration split, apply it to test, print a table and write JSON and PNG.",
    )
    _add_model_options(evaluate)
    evaluate.add_argument("--output_dir", default="coverage_evaluation", help="where coverage.json/.png go")
    evaluate.add_argument("--target_precisions", type=float, nargs="+", default=[0.9, 0.95])
    evaluate.add_argument("--calibration_method", choices=CALIBRATION_METHODS, default="empirical")
    evaluate.add_argument("--delta", type=float, default=0.05, help="Clopper-Pearson risk level")
    evaluate.add_argument(
        "--accept_scores",
        nargs="+",
        choices=ACCEPT_SCORES,
        help="what decides acceptance, the first being the main report (default: cosine; pair_head and combined "
        "when the model folder holds the ALC pair head it was trained with; verifier and verifier_rerank with a "
        "verifier)",
    )

    certify = commands.add_parser(
        "certify",
        allow_abbrev=False,
        help="a threshold whose precision on your own traffic is guaranteed, from a few labelled top-1 predictions",
        description="Step 1, `alc-hf certify MODEL --data ... --split S --budget N --sheet labels.csv`: retrieve "
        "the top-1 of every query of the split S (your traffic; its labels, if any, are not used) and write the N "
        "predictions a person labels, drawn at random, as a CSV with an empty `correct` column. Step 2, `alc-hf "
        "certify --labels labels.csv` once the column is filled in with 1 (right) or 0 (wrong): the threshold with "
        "the most coverage whose precision on that traffic is at least the target with probability 1 - delta, the "
        "coverage it gives, and a next round of rows to label when more could certify a looser threshold.",
    )
    _add_model_options(certify, model_required=False)
    certify.add_argument("--labels", type=Path, help="step 2: the labelled sheet to certify from")
    certify.add_argument("--split", help="step 1: the split that plays the traffic (e.g. test)")
    certify.add_argument("--budget", type=int, help="step 1: predictions to label per round")
    certify.add_argument("--sheet", type=Path, default=Path("certification/labels.csv"), help="step 1: the sheet")
    certify.add_argument("--target_precision", type=float, default=0.9)
    certify.add_argument("--delta", type=float, default=0.05, help="the risk that the certified precision is missed")
    certify.add_argument(
        "--max_rounds", type=int, default=1, help="rounds of --budget labels at most (they share delta)"
    )
    certify.add_argument(
        "--max_coverage",
        type=float,
        default=1.0,
        help="the most coverage looked for: labels are drawn from the best-scored share of the traffic",
    )
    certify.add_argument("--accept_score", choices=ACCEPT_SCORES, default="cosine", help="the score to threshold")
    certify.add_argument("--draw_seed", type=int, default=0, help="seed of the random draw of the rows to label")
    certify.add_argument("--overwrite", action="store_true", help="replace an existing sheet and its plan")
    return parser, {"evaluate": evaluate, "certify": certify}


# Checked before any data is read or any model loaded.
RANGES = {
    "target_precisions": OptionRange(0, 1, low_included=False),
    "target_precision": OptionRange(0, 1, low_included=False, high_included=False),
    "delta": OptionRange(0, 1, low_included=False, high_included=False),
    "batch_size": OptionRange(1),
    "rerank_depth": OptionRange(1),
    "budget": OptionRange(1),
    "max_rounds": OptionRange(1),
    "max_coverage": OptionRange(0, 1, low_included=False),
}


def _accept_models(args: argparse.Namespace) -> tuple[object, object]:
    """The verifier (``--verifier``, or ``MODEL/verifier`` when the recipe saved one there; loaded first, before any
    data is read) and the ALC pair head saved with the model, each None when there is none."""
    from alc_hf.losses.pair_head import saved_pair_head
    from alc_hf.models import resolve_model_path
    from alc_hf.verifier import load_verifier

    verifier_path = args.verifier or (
        Path(args.model) / "verifier" if (Path(args.model) / "verifier").is_dir() else None
    )
    verifier = None if verifier_path is None else load_verifier(verifier_path, device=args.device)
    return verifier, saved_pair_head(resolve_model_path(args.model))


def _evaluate(args: argparse.Namespace) -> None:
    from alc_hf.data.views import load_evaluation_views
    from alc_hf.evaluation import CoverageEvaluator
    from alc_hf.evaluation.outputs import write_reports
    from alc_hf.evaluation.report import accept_score_caveats, accept_score_table
    from alc_hf.models import load_encoder

    check_ranges(vars(args), RANGES)
    verifier, pair_head = _accept_models(args)
    options = {name: getattr(args, name) for name in DATA_OPTION_HELP}
    calibration, test = load_evaluation_views(args.data_dir, args.data, args.view, seed=args.seed, **options)
    evaluator = CoverageEvaluator(
        calibration,
        test,
        target_precisions=args.target_precisions,
        calibration_method=args.calibration_method,
        delta=args.delta,
        batch_size=args.batch_size,
        show_progress_bar=True,
        pair_head=pair_head,
        verifier=verifier,
        rerank_depth=args.rerank_depth,
        accept_scores=args.accept_scores,
    )
    model = load_encoder(args.model, device=args.device)
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
    check_ranges(vars(args), RANGES)
    if args.labels is not None:
        # Everything step 1 decides is in the plan: an option here would be silently ignored.
        ignored = sorted(given - {"labels", "debug"})
        if ignored:
            shown = " ".join("MODEL" if name == "model" else f"--{name}" for name in ignored)
            raise ValueError(
                f"--labels certifies from a sheet and its plan alone, as step 1 planned it: drop {shown} (to certify "
                "otherwise, write a new sheet with step 1)"
            )
        _certify_from_labels(args.labels)
    else:
        missing = [f"--{name}" for name in ("split", "budget") if getattr(args, name) is None]
        if missing:
            raise ValueError(f"certify needs {' and '.join(missing)} to write a sheet (or --labels SHEET to read one)")
        _write_certification_sheet(args)


def _write_certification_sheet(args: argparse.Namespace) -> None:
    from alc_hf.data.views import load_evaluation_view, load_evaluation_views
    from alc_hf.evaluation import CoverageEvaluator
    from alc_hf.evaluation.certify import LABEL_SPELLINGS, plan_certification, plan_path, write_sheet
    from alc_hf.models import load_encoder

    model_name = args.model or DEFAULT_MODEL
    args.model = model_name
    sheet, plan_file = args.sheet, plan_path(args.sheet)
    existing = [str(path) for path in (sheet, plan_file) if path.exists()]
    if existing and not args.overwrite:
        raise FileExistsError(
            f"{' and '.join(existing)} already exist (a person's labels may be in the sheet): pass --overwrite to "
            "replace them, or choose another --sheet"
        )
    verifier, pair_head = _accept_models(args)
    options = {name: getattr(args, name) for name in DATA_OPTION_HELP}
    traffic = load_evaluation_view(args.data_dir, args.data, args.split, args.view, seed=args.seed, **options)
    # Only the combined scores are fitted on a calibration split; the other scores rank the traffic on their own.
    calibration = traffic
    if args.accept_score in FITTED_SCORES:
        calibration = load_evaluation_views(args.data_dir, args.data, args.view, seed=args.seed, **options)[0]
    evaluator = CoverageEvaluator(
        calibration,
        traffic,
        precision_at_k=(1,),
        batch_size=args.batch_size,
        show_progress_bar=True,
        pair_head=pair_head,
        verifier=verifier,
        rerank_depth=args.rerank_depth,
        accept_scores=(args.accept_score,),
    )
    top = evaluator.compute_predictions(load_encoder(model_name, device=args.device))[args.accept_score][1]
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
    )
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
    from alc_hf.evaluation.certify import certification_record, certify_sheet, why_not_looser, write_sheet
    from alc_hf.evaluation.report import write_atomically

    plan, labels, certification = certify_sheet(sheet)
    confidence = f"{1 - plan.delta:.0%}"
    if certification.certified:
        print(
            f"Certified: accept the top-1 when its {plan.accept_score} score is at least {certification.threshold:.6f}."
            f"\nOn {plan.traffic}, its precision is at least {plan.target_precision:g} with probability {confidence} "
            f"(lower bound {certification.precision_lower_bound:.3f}); it accepts {certification.num_accepted} of "
            f"the {certification.num_predictions} queries (coverage {certification.coverage:.3f}).\n"
            f"Labels used: {certification.num_labelled} in {labels.rounds} round(s), "
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
    if certification.next_undecided and labels.rounds < plan.num_rounds_possible:
        if not waiting:
            write_sheet(plan, sheet, labels.rounds + 1, labels.rows)
        print(
            f"A looser threshold is still undecided ({why_not_looser(certification)}): round {labels.rounds + 1}'s "
            f"{len(plan.rows(labels.rounds + 1))} rows are in {sheet}. Label them and run this again."
        )
    elif certification.next_undecided:
        print(
            f"A looser threshold is still undecided ({why_not_looser(certification)}), and every planned round is "
            "used: more labels need a new plan."
        )


def _record_in_model_folder(plan: CertificationPlan, record: dict, written: Path) -> None:
    """Keep the certification in the model folder's ``certifications.json`` beside the others and rewrite the card's
    section from them, saying what a new one replaces; a model that is no local folder is told so."""
    from alc_hf.evaluation.certify import (
        CERTIFICATIONS_FILE,
        certifications_card_section,
        record_certification,
        replace_card_section,
    )
    from alc_hf.evaluation.report import write_atomically

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


def _given_options(command: argparse.ArgumentParser, command_argv: Sequence[str]) -> set[str]:
    """The ``dest`` of each option written in ``command_argv`` (``model`` for a MODEL): a default cannot be told
    from a value given. argparse sets a default only where the namespace has no value yet, so each starts as a
    marker that only a given value replaces (an absent optional positional gets its default, None)."""
    unset = object()
    namespace = argparse.Namespace(**{action.dest: unset for action in command._actions})
    command.parse_known_args(list(command_argv), namespace)
    return {name for name, value in vars(namespace).items() if value is not unset and value is not None}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, commands = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        options = [option for action in commands[args.command]._actions for option in action.option_strings]
        commands[args.command].error(unknown_arguments(unknown, options))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "evaluate":
        run = functools.partial(_evaluate, args)
    else:
        run = functools.partial(_certify, args, _given_options(commands["certify"], argv[argv.index("certify") + 1 :]))
    return run_program(run, f"alc-hf {args.command}", debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
