"""What a run keeps in its ``output_dir``, and the rules that keep one run's files apart from another's and never
lose a finished model.

* A run does not start in an ``output_dir`` that holds an earlier run (its model folder, training log or
  checkpoints) unless told to: ``--overwrite_output_dir`` replaces it, and ``--resume_from_checkpoint`` continues
  the earlier run from its checkpoints. Files that no run writes are left.
* Replacing keeps the earlier run whole until the new model exists: its ``final/`` and training log stay where they
  are, its checkpoints and evaluations (which the new run would write over) wait in ``earlier_run/``, and only once
  the new ``final/`` is published is ``earlier_run/`` deleted. A run killed at any moment leaves the earlier model
  loadable in ``final/``.
* The model folder, ``final/`` (the folder ``--push_to_hub`` publishes), is built in ``final.partial/`` and renamed
  into place once complete: it never holds one run's model beside another run's reports, and a run that fails
  leaves no ``final/`` that looks finished.
* One run at a time: :func:`output_dir_lock` holds ``.alc_hf.lock`` in the folder for the whole run, and a second
  run into it is refused while the first is alive. The lock is an ``fcntl`` lock, so the system releases it when its
  process dies, even by SIGKILL: a lock file left by a dead run is taken over (and said so).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from alc_hf.core.files import umask_mode

logger = logging.getLogger(__name__)

FINAL_FOLDER = "final"
PARTIAL_FOLDER = "final.partial"
TRAINING_LOG = "training_log.json"
# Where SentenceTransformerTrainer.evaluate() has the evaluator write its JSON.
EVALUATION_FOLDER = "eval"
# The replaced run's checkpoints and evaluations, until the new run's final/ is published.
EARLIER_RUN_FOLDER = "earlier_run"
LOCK_FILE = ".alc_hf.lock"


def partial_model_dir(output_dir: str | Path) -> Path:
    """Where the model folder is built before :func:`publish_model_dir` renames it to ``output_dir/final``."""
    return Path(output_dir) / PARTIAL_FOLDER


def earlier_run_files(output_dir: str | Path) -> list[Path]:
    """What an earlier run left in ``output_dir``: its model folder, training log, checkpoints, evaluations, and
    what a replacing run killed before it finished set aside."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    named = [output_dir / name for name in (FINAL_FOLDER, TRAINING_LOG, EVALUATION_FOLDER, EARLIER_RUN_FOLDER)]
    checkpoints = sorted(output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*"))
    return [path for path in named if path.exists()] + [path for path in checkpoints if path.is_dir()]


def check_output_dir(output_dir: str | Path, overwrite: bool, resume_from_checkpoint: str | None) -> list[Path]:
    """Refuse, before any work, an ``output_dir`` that holds an earlier run, unless ``overwrite``. Returns what this
    run replaces, for :func:`set_aside_earlier_run`: everything :func:`earlier_run_files` lists (but the checkpoints
    when resuming from one), and a ``final.partial/`` left by a run that failed."""
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


def set_aside_earlier_run(output_dir: str | Path, replaced: list[Path]) -> str | None:
    """Before the new run writes: move the ``replaced`` checkpoints and evaluations into ``earlier_run/`` and remove
    a failed run's ``final.partial/``; ``final/`` and the training log stay in place until :func:`publish_model_dir`
    replaces them. When ``earlier_run/`` already exists, a replacing run was killed before it published: the
    finished run's files are those set aside then, and the checkpoints and evaluations here are the killed run's,
    removed. Returns what a person is told, or None when nothing of an earlier run is kept aside. Call it on one
    process."""
    output_dir = Path(output_dir)
    aside = output_dir / EARLIER_RUN_FOLDER
    kept_in_place = {FINAL_FOLDER, TRAINING_LOG, EARLIER_RUN_FOLDER, PARTIAL_FOLDER}
    written_over = [path for path in replaced if path.name not in kept_in_place and path.exists()]
    remove_files([partial_model_dir(output_dir)])
    if aside.exists():
        remove_files(written_over)
    elif written_over:
        aside.mkdir()
        for path in written_over:
            os.replace(path, aside / path.name)
    kept = []
    if (output_dir / FINAL_FOLDER).exists():
        kept.append(f"its model stays in {output_dir / FINAL_FOLDER}")
    if aside.exists():
        kept.append(f"its checkpoints and evaluations wait in {aside}")
    if not kept:
        return None
    return f"Replacing the earlier run in {output_dir}: {' and '.join(kept)} until this run's model is complete."


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
    shared), then delete what :func:`set_aside_earlier_run` kept of the replaced run. Returns the model folder."""
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
    remove_files([output_dir / EARLIER_RUN_FOLDER])
    return final


def apply_umask_permissions(folder: Path) -> None:
    """Give every file and folder under ``folder`` (itself included) the mode a new one gets under the umask."""
    folder.chmod(umask_mode(directory=True))
    for path in folder.rglob("*"):
        if not path.is_symlink():
            path.chmod(umask_mode(directory=path.is_dir()))


def _holder(lock_path: Path) -> dict:
    """What the lock file says of the run that holds (or held) it; empty when it says nothing readable."""
    try:
        holder = json.loads(lock_path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


@contextlib.contextmanager
def output_dir_lock(output_dir: str | Path, enabled: bool = True) -> Iterator[None]:
    """Hold ``output_dir/.alc_hf.lock`` for the ``with`` block: a second run into the same folder is refused with a
    ``FileExistsError`` naming the run that holds it (its pid, host and start). ``enabled=False`` (the processes of
    a multi-process run other than the first) takes no lock. A folder this creates and nothing else fills is removed
    again on the way out, so a run refused before any work leaves no folder."""
    if not enabled:
        yield
        return
    output_dir = Path(output_dir)
    created = not output_dir.exists()
    output_dir.mkdir(parents=True, exist_ok=True)
    lock_path = output_dir / LOCK_FILE
    while True:
        handle = open(lock_path, "a+", encoding="utf-8")  # noqa: SIM115 (held open for the whole run)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            holder = _holder(lock_path)
            who = (
                f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
                if holder
                else "a run that has not yet said who it is"
            )
            raise FileExistsError(
                f"--output_dir {output_dir} is in use by another run ({who}): wait for it to finish, or choose "
                "another --output_dir"
            ) from None
        # The file may have been removed by the run that held it between our open and our lock: lock the file that
        # is at the path now.
        if lock_path.exists() and os.stat(lock_path).st_ino == os.fstat(handle.fileno()).st_ino:
            break
        handle.close()
    earlier = _holder(lock_path)
    if earlier:
        logger.warning(
            "%s: taking over the lock of a run that ended without releasing it (pid %s on %s, started %s)",
            output_dir,
            earlier.get("pid"),
            earlier.get("host"),
            earlier.get("started"),
        )
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(me))
    handle.flush()
    try:
        yield
    finally:
        lock_path.unlink(missing_ok=True)
        handle.close()
        if created and not any(output_dir.iterdir()):
            output_dir.rmdir()
