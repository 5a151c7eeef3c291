"""The ``alc-hf`` command.

alc-hf evaluate [MODEL] [--data catalog|wdc|tables|xmc|beir|pairs] [--data_dir DIR] [--text_fields F ...]
    [--query_column C --label_column C ...] [--view corpus|labelled] [--output_dir DIR]
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from alc_hf.command_line import DEBUG_ENVIRONMENT_VARIABLE, OptionRange, check_ranges, run_program, unknown_arguments
from alc_hf.data.views import DATA_FORMAT_HELP, DATA_FORMATS, DATA_OPTION_HELP
from alc_hf.evaluation.accept import ACCEPT_SCORES
from alc_hf.metrics import CALIBRATION_METHODS
from alc_hf.models import DEFAULT_MODEL


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The command line, and each command's own parser (whose options a misspelt one is compared with)."""
    parser = argparse.ArgumentParser(prog="alc-hf", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    evaluate = commands.add_parser(
        "evaluate",
        help="coverage of a saved model at thresholds calibrated on one split and applied to another",
        description="Embed a dataset's calibration and test splits with a saved model, calibrate a threshold per "
        "target precision on the calibration split, apply it to test, print a table and write JSON and PNG.",
    )
    evaluate.add_argument(
        "model",
        nargs="?",
        default=DEFAULT_MODEL,
        help=f"saved model folder or Hub id (default: {DEFAULT_MODEL}, offline when installed)",
    )
    evaluate.add_argument("--data", choices=DATA_FORMATS, default="catalog", help=DATA_FORMAT_HELP)
    evaluate.add_argument("--data_dir", help="folder of the data (every format but catalog)")
    for name, help_text in DATA_OPTION_HELP.items():
        evaluate.add_argument(f"--{name}", nargs="+" if name == "text_fields" else None, help=help_text)
    evaluate.add_argument(
        "--view",
        choices=("corpus", "labelled"),
        help="rank against every label, or only the labelled candidates (default: labelled for tables/wdc and for "
        "pairs with --relevance_column, corpus otherwise)",
    )
    evaluate.add_argument("--output_dir", default="coverage_evaluation", help="where coverage.json/.png go")
    evaluate.add_argument("--target_precisions", type=float, nargs="+", default=[0.9, 0.95])
    evaluate.add_argument("--calibration_method", choices=CALIBRATION_METHODS, default="empirical")
    evaluate.add_argument("--delta", type=float, default=0.05, help="Clopper-Pearson risk level")
    evaluate.add_argument("--batch_size", type=int, default=64)
    evaluate.add_argument(
        "--seed",
        type=int,
        default=0,
        help="the built-in catalog's seed, and the seed of the random calibration half (xmc; beir or pairs without a "
        "calibration split)",
    )
    evaluate.add_argument("--device", help="e.g. cpu or cuda (default: sentence-transformers' choice)")
    evaluate.add_argument(
        "--accept_scores",
        nargs="+",
        choices=ACCEPT_SCORES,
        help="what decides acceptance, the first being the main report (default: cosine; pair_head and combined "
        "when the model folder holds the ALC pair head it was trained with; verifier and verifier_rerank with a "
        "verifier)",
    )
    evaluate.add_argument(
        "--verifier",
        help="a saved cross-encoder that decides acceptance from the texts (default: MODEL/verifier when the recipe "
        "saved one there)",
    )
    evaluate.add_argument("--rerank_depth", type=int, default=5, help="top predictions verifier_rerank re-ranks")
    evaluate.add_argument(
        "--debug",
        action="store_true",
        help=f"show the traceback of an error, not only its message (as {DEBUG_ENVIRONMENT_VARIABLE}=1 does)",
    )
    return parser, {"evaluate": evaluate}


# Checked before any data is read or any model loaded.
EVALUATE_RANGES = {
    "target_precisions": OptionRange(0, 1, low_included=False),
    "delta": OptionRange(0, 1, low_included=False, high_included=False),
    "batch_size": OptionRange(1),
    "rerank_depth": OptionRange(1),
}


def _evaluate(args: argparse.Namespace) -> None:
    from alc_hf.data.views import load_evaluation_views
    from alc_hf.evaluation import CoverageEvaluator
    from alc_hf.evaluation.outputs import write_reports
    from alc_hf.evaluation.report import accept_score_caveats, accept_score_table
    from alc_hf.losses.pair_head import saved_pair_head
    from alc_hf.models import load_encoder, resolve_model_path
    from alc_hf.verifier import load_verifier

    check_ranges(vars(args), EVALUATE_RANGES)
    # The verifier is checked before any data is read or the bi-encoder loaded.
    verifier_path = args.verifier or (
        Path(args.model) / "verifier" if (Path(args.model) / "verifier").is_dir() else None
    )
    verifier = None if verifier_path is None else load_verifier(verifier_path, device=args.device)
    options = {name: getattr(args, name) for name in DATA_OPTION_HELP}
    calibration, test = load_evaluation_views(args.data_dir, args.data, args.view, seed=args.seed, **options)
    pair_head = saved_pair_head(resolve_model_path(args.model))
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


def main(argv: Sequence[str] | None = None) -> int:
    parser, commands = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        options = [option for action in commands[args.command]._actions for option in action.option_strings]
        commands[args.command].error(unknown_arguments(unknown, options))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run_program(functools.partial(_evaluate, args), f"alc-hf {args.command}", debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
