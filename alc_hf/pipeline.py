"""What the training recipe does, as library calls: the loss from its options, LoRA adapters, the Hub check that
runs before training, evaluation on every process, the model card and the run summary."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from packaging.version import Version
from safetensors.torch import load_file, save_file
from sentence_transformers import SentenceTransformer
from torch import nn
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from alc_hf.evaluation import CoverageEvaluator, CoverageReport
from alc_hf.evaluation.report import accept_score_table, target_name, write_atomically, write_reports
from alc_hf.losses import ALCLoss, PairHead, TCMLoss
from alc_hf.losses.backbones import build_base_loss
from alc_hf.losses.in_batch import InBatchLoss

logger = logging.getLogger(__name__)


def build_loss(
    model: SentenceTransformer,
    base_loss: str | nn.Module = "softmax",
    alc: bool = True,
    ql_weight: float = 1.0,
    qb_weight: float = 1.0,
    num_negatives: int = 8,
    pair_head_hidden_dim: int | None = None,
    head_warmup_steps: int = 0,
    tcm: bool = True,
    pos_margin: float = 0.9,
    neg_margin: float = 0.5,
    gather_across_devices: bool = False,
) -> nn.Module:
    """``TCMLoss(ALCLoss(base_loss))`` with the parts switched on, or the backbone alone when both are off.

    ``base_loss`` is a built-in backbone's name or a loss object that can share embeddings (such as
    ``MultipleNegativesRankingLoss(model)``)."""
    loss: str | nn.Module = base_loss
    if alc:
        loss = ALCLoss(
            model,
            base_loss=loss,
            ql_weight=ql_weight,
            qb_weight=qb_weight,
            num_negatives=num_negatives,
            pair_head_hidden_dim=pair_head_hidden_dim,
            head_warmup_steps=head_warmup_steps,
            gather_across_devices=gather_across_devices,
        )
    if tcm:
        loss = TCMLoss(
            model,
            base_loss=loss,
            pos_margin=pos_margin,
            neg_margin=neg_margin,
            gather_across_devices=gather_across_devices,
        )
    if isinstance(loss, str):
        loss = build_base_loss(model, loss, "the recipe", gather_across_devices)
    return loss


def find_alc_loss(loss: nn.Module) -> ALCLoss | None:
    """The ALCLoss in a chain of wrapping losses (each keeps the one it wraps in ``.loss``), if any."""
    while loss is not None:
        if isinstance(loss, ALCLoss):
            return loss
        loss = getattr(loss, "loss", None)
    return None


def find_pair_head(loss: nn.Module) -> PairHead | None:
    """The pair head trained by the ALCLoss in ``loss``, if any."""
    alc_loss = find_alc_loss(loss)
    return None if alc_loss is None else alc_loss.pair_head


def pair_head_learning_rates(loss: nn.Module, learning_rate: float) -> dict[str, float]:
    """``learning_rate_mapping`` entries that give the pair head its own learning rate: it starts from scratch
    and learns too slowly at an encoder's fine-tuning rate."""
    return {r"pair_head\.": learning_rate} if find_alc_loss(loss) is not None else {}


def candidates_per_query(loss: nn.Module) -> int | None:
    """How many in-batch candidates each query was scored against in the last step (every process's when the
    loss gathers across devices)."""
    return loss.last_num_candidates if isinstance(loss, InBatchLoss) else None


class LoraUnavailableError(RuntimeError):
    """LoRA was asked for but the installed transformers and PEFT cannot train an adapter together."""


def check_lora_available() -> None:
    """Fail before any data is read or any model trained when the installed transformers refuses the installed PEFT
    (``add_adapter`` would raise only once training is set up), naming both versions and what to install."""
    import transformers
    from transformers.integrations import peft as transformers_peft

    if importlib.util.find_spec("peft") is None:
        raise LoraUnavailableError("LoRA (--lora_r) needs PEFT: `pip install peft`.")
    installed = importlib.metadata.version("peft")
    required = transformers_peft.MIN_PEFT_VERSION
    if Version(installed) < Version(required):
        raise LoraUnavailableError(
            f"LoRA (--lora_r) cannot work with transformers {transformers.__version__} and PEFT {installed}: this "
            f"transformers needs PEFT >= {required}. Install `pip install 'peft>={required}'` if it is published, or "
            "the tested pair from constraints.txt (`pip install --constraint constraints.txt transformers peft`)."
        )


def add_lora_adapter(
    model: SentenceTransformer,
    base_model: str,
    r: int,
    alpha: int = 16,
    dropout: float = 0.05,
    target_modules: Sequence[str] | None = None,
) -> None:
    """Train a LoRA adapter instead of the whole encoder; the model card says it is an adapter of ``base_model``."""
    check_lora_available()
    from peft import LoraConfig, TaskType

    if r < 1:
        raise ValueError(f"lora_r must be >= 1, got {r}")
    model.add_adapter(
        LoraConfig(
            task_type=TaskType.FEATURE_EXTRACTION,
            r=r,
            lora_alpha=alpha,
            lora_dropout=dropout,
            target_modules=list(target_modules) if target_modules else None,
        )
    )
    card = model.model_card_data
    card.model_name = f"LoRA adapter (r={r}) for {base_model}, trained with alc_hf"
    card.tags = [*card.tags, "peft", "lora", "alc_hf"]


class HubUnavailableError(RuntimeError):
    """Pushing to the Hub was asked for but cannot work (offline, no token, or the Hub is unreachable)."""


def check_hub_ready(hub_model_id: str | None, token: str | None = None) -> str:
    """Make sure a push at the end of training can succeed, before training starts; returns the user name.

    Raises :class:`HubUnavailableError` when ``HF_HUB_OFFLINE`` is set, no token is found, or the Hub does not
    answer to the token."""
    from huggingface_hub import HfApi, constants, get_token

    where = f"--push_to_hub{f' to {hub_model_id}' if hub_model_id else ''}"
    if constants.HF_HUB_OFFLINE:
        raise HubUnavailableError(f"{where} is impossible: HF_HUB_OFFLINE=1 is set. Unset it or drop --push_to_hub.")
    token = token or get_token()
    if not token:
        raise HubUnavailableError(
            f"{where} needs a Hugging Face token: run `hf auth login`, set HF_TOKEN or pass --hub_token."
        )
    try:
        return HfApi().whoami(token=token)["name"]
    except Exception as error:  # any failure here means the push would fail after training: stop now, say why
        raise HubUnavailableError(
            f"{where}: the Hugging Face Hub cannot be reached with this token ({error})."
        ) from error


LOSS_STATE_FILE = "loss_state.safetensors"


def loss_own_state(loss: nn.Module, model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors of ``loss`` that are not the encoder's: the ALC pair head's parameters."""
    encoder_tensors = {id(tensor) for tensor in model.state_dict(keep_vars=True).values()}
    return {
        name: tensor.detach().contiguous()
        for name, tensor in loss.state_dict(keep_vars=True).items()
        if id(tensor) not in encoder_tensors
    }


class LossCheckpointCallback(TrainerCallback):
    """Saves the loss's own parameters (the ALC pair head) into every checkpoint: the Trainer checkpoints the
    encoder and the optimizer but not the loss module, so without this a resumed run restarts the pair head from
    scratch. :func:`load_loss_checkpoint` puts them back."""

    def __init__(self, loss: nn.Module, model: nn.Module) -> None:
        self.loss = loss
        self.model = model

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        own_state = loss_own_state(self.loss, self.model)
        if state.is_world_process_zero and own_state:
            checkpoint = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            save_file({name: tensor.cpu() for name, tensor in own_state.items()}, str(checkpoint / LOSS_STATE_FILE))


def load_loss_checkpoint(loss: nn.Module, model: nn.Module, checkpoint: str | Path) -> None:
    """Restore what :class:`LossCheckpointCallback` saved in ``checkpoint`` (a ``checkpoint-N`` folder)."""
    expected = loss_own_state(loss, model)
    if not expected:
        return
    path = Path(checkpoint) / LOSS_STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: {checkpoint} holds no state for the loss's own parameters "
            f"({', '.join(sorted(expected))}); was it written by a run with the same loss configuration?"
        )
    saved = load_file(str(path))
    if saved.keys() != expected.keys():
        raise ValueError(
            f"{path} holds {sorted(saved)} but the loss has {sorted(expected)}: the loss configuration changed"
        )
    with torch.no_grad():
        for name, tensor in expected.items():
            tensor.copy_(saved[name].to(tensor.device))


def run_coverage_evaluation(trainer: Any, evaluator: CoverageEvaluator) -> dict[str, CoverageReport] | None:
    """Run ``evaluator`` through ``trainer.evaluate()`` (collective under several processes: call it on every one)
    and return its reports per accept score on the main process, None on the others. The trainer's own evaluator
    is restored."""
    trainer_evaluator, trainer.evaluator = trainer.evaluator, evaluator
    try:
        trainer.evaluate()
    finally:
        trainer.evaluator = trainer_evaluator
    return evaluator.last_reports if trainer.is_world_process_zero() else None


def finish_run(
    trainer: Any,
    loss: nn.Module,
    before: dict[str, CoverageReport] | None,
    after: dict[str, CoverageReport] | None,
) -> Path:
    """Save the model (and the pair head) to ``output_dir/final``, write the coverage reports and the training
    log, print a summary, and push to the Hub when asked. Call it on every process; returns the model folder."""
    output_dir = Path(trainer.args.output_dir)
    final_dir = output_dir / "final"
    trainer.save_model(str(final_dir))
    if trainer.is_world_process_zero():
        alc_loss = find_alc_loss(loss)
        if alc_loss is not None:
            alc_loss.save_pair_head(final_dir)
        if len(after) > 1:
            card = final_dir / "README.md"
            card.write_text(card.read_text() + accept_decision_section(after, final_dir))
        written = write_reports(after, output_dir, "coverage_after")
        if before is not None:
            written += write_reports(before, output_dir, "coverage_before")
        written.append(
            write_atomically(
                output_dir / "training_log.json",
                json.dumps(trainer.state.log_history, indent=2, default=str).encode(),
            )
        )
        print(run_summary(trainer, loss, before, after, final_dir, written))
    if trainer.args.push_to_hub:
        trainer.push_to_hub()
    return final_dir


def accept_decision_section(reports: dict[str, CoverageReport], model_dir: Path) -> str:
    """The model card's account of how this folder decides acceptance, with each accept score's coverage."""
    parts = ["the bi-encoder in this folder retrieves each query's top labels by cosine"]
    if (model_dir / "pair_head").is_dir():
        parts.append("the ALC pair head in `pair_head/` scores a (query, label) pair from the two embeddings")
    if (model_dir / "verifier").is_dir():
        parts.append("the cross-encoder in `verifier/` reads the (query, label) texts together")
    return (
        "\n\n## Accept decision\n\n"
        + "; ".join(parts)
        + ". Each accept score below decides acceptance with its own threshold, calibrated on the calibration split "
        "for the target precision and applied to the test split (`cosine`: the retrieval score; `pair_head`: the "
        "head's probability; `combined`: a logistic regression on both, fitted on the calibration split; "
        "`verifier`: the cross-encoder's probability for the top-1; `verifier_rerank`: its top-1 after it re-ranks "
        "the top candidates). ms/query is the cost of the decision on the machine that trained it.\n\n```\n"
        + accept_score_table(reports)
        + "\n```\n"
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
        parts = [key for key in ("base", "ql", "qb", "tcm") if key in logged[0]]
        lines.append(
            "loss parts, first -> last log: "
            + ", ".join(f"{key} {logged[0][key]:.4f} -> {logged[-1][key]:.4f}" for key in parts)
        )
    candidates = candidates_per_query(loss)
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
    lines += [
        "",
        f"model and card: {final_dir} ({final_dir / 'README.md'})",
        f"reports: {', '.join(str(path) for path in written)}",
        "=" * 80,
    ]
    return "\n".join(lines)
