"""What a run keeps in its ``output_dir``, and the two rules that keep one run's files apart from another's.

* A run does not start in an ``output_dir`` that holds an earlier run (its model folder, training log or
  checkpoints) unless told to: ``--overwrite_output_dir`` removes what the new run rewrites, and
  ``--resume_from_checkpoint`` continues the earlier run from its checkpoints. Files that no run writes are left.
* The model folder, ``final/`` (the folder ``--push_to_hub`` publishes), is built in ``final.partial/`` and renamed
  into place once complete: it never holds one run's model beside another run's reports, and a run that fails
  leaves no ``final/`` that looks finished.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from alc_hf.evaluation.report import umask_mode

FINAL_FOLDER = "final"
PARTIAL_FOLDER = "final.partial"
TRAINING_LOG = "training_log.json"
# Where SentenceTransformerTrainer.evaluate() has the evaluator write its JSON.
EVALUATION_FOLDER = "eval"


def partial_model_dir(output_dir: str | Path) -> Path:
    """Where the model folder is built before :func:`publish_model_dir` renames it to ``output_dir/final``."""
    return Path(output_dir) / PARTIAL_FOLDER


def earlier_run_files(output_dir: str | Path) -> list[Path]:
    """What an earlier run left in ``output_dir``: its model folder, training log, checkpoints, evaluations."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    named = [output_dir / name for name in (FINAL_FOLDER, TRAINING_LOG, EVALUATION_FOLDER)]
    checkpoints = sorted(output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*"))
    return [path for path in named if path.exists()] + [path for path in checkpoints if path.is_dir()]


def check_output_dir(output_dir: str | Path, overwrite: bool, resume_from_checkpoint: str | None) -> list[Path]:
    """Refuse, before any work, an ``output_dir`` that holds an earlier run, unless ``overwrite``. Returns what
    :func:`remove_files` must remove before this run writes: everything :func:`earlier_run_files` lists (but the
    checkpoints when resuming from one), and a ``final.partial/`` left by a run that failed."""
    output_dir = Path(output_dir)
    earlier = earlier_run_files(output_dir)
    if resume_from_checkpoint is not None:
        earlier = [path for path in earlier if not path.name.startswith(f"{PREFIX_CHECKPOINT_DIR}-")]
    if earlier and not overwrite:
        found = ", ".join(path.name + ("/" if path.is_dir() else "") for path in earlier[:4])
        more = f" and {len(earlier) - 4} more" if len(earlier) > 4 else ""
        resume = "" if resume_from_checkpoint else ", --resume_from_checkpoint last to continue it from a checkpoint"
        raise FileExistsError(
            f"--output_dir {output_dir} holds an earlier run ({found}{more}): pass --overwrite_output_dir true to "
            f"replace it{resume}, or choose another --output_dir"
        )
    return [*earlier, partial_model_dir(output_dir)]


def remove_files(paths: list[Path]) -> None:
    """Remove each file or folder of ``paths`` that exists (several processes may call it, one after another)."""
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def publish_model_dir(output_dir: str | Path) -> Path:
    """Rename the complete ``final.partial/`` to ``final/`` (replacing an older ``final/``) with the permissions the
    umask gives new files (safetensors writes its files readable by their owner only; the folder is published and
    shared). Returns the model folder."""
    output_dir = Path(output_dir)
    partial, final = partial_model_dir(output_dir), output_dir / FINAL_FOLDER
    apply_umask_permissions(partial)
    if final.exists():
        replaced = output_dir / f"{FINAL_FOLDER}.replaced"
        remove_files([replaced])
        os.replace(final, replaced)
        os.replace(partial, final)
        remove_files([replaced])
    else:
        os.replace(partial, final)
    return final


def apply_umask_permissions(folder: Path) -> None:
    """Give every file and folder under ``folder`` (itself included) the mode a new one gets under the umask."""
    folder.chmod(umask_mode(directory=True))
    for path in folder.rglob("*"):
        if not path.is_symlink():
            path.chmod(umask_mode(directory=path.is_dir()))
