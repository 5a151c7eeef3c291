"""The end of a run: coverage through the trainer, the saved model folder with its pair head, card and reports, the
training log, the summary a person reads, and the push of the model folder."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from alc_hf.core.files import write_atomically
from alc_hf.core.metrics import target_name
from alc_hf.evaluation import CoverageEvaluator, CoverageReport
from alc_hf.evaluation.outputs import write_reports
from alc_hf.evaluation.report import accept_score_caveats, accept_score_table
from alc_hf.losses.base import loss_chain
from alc_hf.losses.pair_head import PAIR_HEAD_FOLDER
from alc_hf.training.hub import push_model_folder
from alc_hf.training.loss_composition import find_alc_loss
from alc_hf.training.output_dir import FINAL_FOLDER, TRAINING_LOG, partial_model_dir, publish_model_dir

# The parts the losses return, as the training log names them, and what each is.
LOSS_PARTS = {
    "base": "the backbone's retrieval loss",
    "ql": "ALC query-label BCE on the hardest negative",
    "qb": "ALC query-batch softmax over the k hardest",
    "tcm": "TCM margin violations",
}


def run_coverage_evaluation(
    trainer: Any, evaluator: CoverageEvaluator, stage: str = ""
) -> dict[str, CoverageReport] | None:
    """Run ``evaluator`` through ``trainer.evaluate()`` (collective under several processes: call it on every one)
    and return its reports per accept score on the main process, None on the others. The trainer's own evaluator
    is restored. The main process says what it measures (``stage``: e.g. ``"before training"``) and how long it
    took: on a CPU embedding the splits takes minutes."""
    if trainer.is_world_process_zero():
        print(f"Measuring coverage{' ' + stage if stage else ''}: {evaluator.workload()} ...", flush=True)
    started = time.perf_counter()
    trainer_evaluator, trainer.evaluator = trainer.evaluator, evaluator
    try:
        trainer.evaluate()
    finally:
        trainer.evaluator = trainer_evaluator
    if not trainer.is_world_process_zero():
        return None
    print(f"Coverage{' ' + stage if stage else ''} measured in {time.perf_counter() - started:.0f} s.", flush=True)
    return evaluator.last_reports


def finish_run(
    trainer: Any,
    loss: nn.Module,
    before: dict[str, CoverageReport] | None,
    after: dict[str, CoverageReport] | None,
    hub_repo_id: str | None = None,
    base_model: str | None = None,
) -> Path:
    """Save the model with its pair head, card and coverage reports to ``output_dir/final`` (one self-contained
    folder, built in ``final.partial/`` beside any verifier already saved there, and renamed into place once
    complete), the training log to ``output_dir``, print a summary, and push the model folder alone to
    ``hub_repo_id`` when given (never the checkpoints). ``base_model`` names the model the run started from in the
    plots of the coverage before training. Call it on every process; returns the model folder."""
    output_dir = Path(trainer.args.output_dir)
    partial_dir, final_dir = partial_model_dir(output_dir), output_dir / FINAL_FOLDER
    trainer.save_model(str(partial_dir))
    if trainer.is_world_process_zero():
        alc_loss = find_alc_loss(loss)
        if alc_loss is not None:
            alc_loss.save_pair_head(partial_dir)
        if len(after) > 1:
            card = partial_dir / "README.md"
            card.write_text(card.read_text() + accept_decision_section(after, partial_dir))
        reports = write_reports(after, partial_dir, "coverage_after", model_name=str(final_dir))
        if before is not None:
            reports += write_reports(before, partial_dir, "coverage_before", model_name=base_model)
        publish_model_dir(output_dir)
        written = [final_dir / path.name for path in reports]
        written.append(
            write_atomically(
                output_dir / TRAINING_LOG,
                json.dumps(trainer.state.log_history, indent=2, default=str).encode(),
            )
        )
        print(run_summary(trainer, loss, before, after, final_dir, written))
        if hub_repo_id is not None:
            pushed = push_model_folder(final_dir, hub_repo_id, trainer.args.hub_token, trainer.args.hub_private_repo)
            print(f"pushed {final_dir} to https://huggingface.co/{pushed}")
    return final_dir


def accept_decision_section(reports: dict[str, CoverageReport], model_dir: Path) -> str:
    """The model card's account of how this folder decides acceptance, with each accept score's coverage."""
    parts = ["the bi-encoder in this folder retrieves each query's top labels by cosine"]
    if (model_dir / PAIR_HEAD_FOLDER).is_dir():
        parts.append(
            f"the ALC pair head in `{PAIR_HEAD_FOLDER}/` scores a (query, label) pair from the two embeddings "
            "(`alc_hf.PairHead.from_pretrained` loads it from this folder or its Hub id)"
        )
    if (model_dir / "verifier").is_dir():
        parts.append("the cross-encoder in `verifier/` reads the (query, label) texts together")
    return (
        "\n\n## Accept decision\n\n"
        + "; ".join(parts)
        + ". Each accept score below decides acceptance with its own threshold, calibrated on the calibration split "
        "for the target precision and applied to the test split (`cosine`: the retrieval score; `pair_head`: the "
        "head's probability; `combined`: a logistic regression on both, fitted on the calibration split; "
        "`verifier`: the cross-encoder's probability for the top-1; `verifier_rerank`: its top-1 after it re-ranks "
        "the top candidates; `verifier_combined`: a logistic regression on the cosine and the cross-encoder's "
        "logit, fitted on the calibration split). ms/query is the cost of the decision on the machine that trained "
        "it.\n\n```\n" + accept_score_table(reports) + "\n```\n"
    )


def run_summary(
    trainer: Any,
    loss: nn.Module,
    before: dict[str, CoverageReport] | None,
    after: dict[str, CoverageReport],
    final_dir: Path,
    written: Sequence[Path],
) -> str:
    """The end-of-run summary: loss parts first to last, coverage before and after, where everything went."""
    lines = ["", "=" * 80, f"Trained {trainer.state.global_step} steps."]
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    if logged:
        parts = [key for key in LOSS_PARTS if key in logged[0]]
        lines.append(
            "loss parts, first -> last log: "
            + ", ".join(f"{key} {logged[0][key]:.4f} -> {logged[-1][key]:.4f}" for key in parts)
        )
        lines.append("(" + "; ".join(f"{key}: {LOSS_PARTS[key]}" for key in parts) + ")")
    # Each query's in-batch candidates in the last step (every process's when the loss gathers across devices).
    counted = [part.last_num_candidates for part in loss_chain(loss) if hasattr(part, "last_num_candidates")]
    candidates = counted[0] if counted else None
    if candidates is not None:
        lines.append(
            f"in-batch candidates per query (last step): {candidates} over {trainer.args.world_size} process(es)"
        )
    primary_after = next(iter(after.values()))
    metrics_after = primary_after.metrics()
    metrics_before = next(iter(before.values())).metrics() if before is not None else {}
    lines.append(f"{'test figure':<24}{'before':>10}{'after':>10}")
    names = ["p@1", *(f"c@1_{target_name(r.calibrated.target_precision)}" for r in primary_after.coverage[1])]
    for name in names:
        old = metrics_before.get(name)
        lines.append(f"{name:<24}{'-' if old is None else f'{old:.3f}':>10}{metrics_after[name]:>10.3f}")
    lines.append("(c@1_pXX: coverage of top-1 at the threshold calibrated for XX% precision on the calibration split)")
    if len(after) > 1:
        lines += ["", "after training, accepted by each score (same retrieval, same thresholds protocol):"]
        lines.append(accept_score_table(after))
    lines += accept_score_caveats(after)
    lines += [
        "",
        f"model and card: {final_dir} ({final_dir / 'README.md'})",
        f"reports: {', '.join(str(path) for path in written)}",
        "=" * 80,
    ]
    return "\n".join(lines)
