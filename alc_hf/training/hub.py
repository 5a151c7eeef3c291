"""Publishing to the Hub: the check that runs before training (a push that can only fail after hours of training
fails at once), and the push of the final model folder alone at the end."""

from __future__ import annotations

from pathlib import Path

from alc_hf.core.program import SetupError


class HubUnavailableError(SetupError):
    """Pushing to the Hub was asked for but cannot work (offline, no token, or the Hub is unreachable)."""


def check_hub_ready(hub_model_id: str | None, output_dir: str | Path, token: str | None = None) -> str:
    """Make sure a push at the end of training can succeed, before training starts; returns the repository id it
    will push to: ``hub_model_id``, in the user's namespace when it names none, by default the name of
    ``output_dir`` (as the Trainer names it).

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
        user = HfApi().whoami(token=token)["name"]
    except Exception as error:  # any failure here means the push would fail after training: stop now, say why
        raise HubUnavailableError(
            f"{where}: the Hugging Face Hub cannot be reached with this token ({error})."
        ) from error
    repo_id = hub_model_id or Path(output_dir).absolute().name
    return repo_id if "/" in repo_id else f"{user}/{repo_id}"


def push_model_folder(folder: str | Path, repo_id: str, token: str | None = None, private: bool | None = None) -> str:
    """Upload ``folder`` as the content of the model repository ``repo_id`` (created when missing) in one commit;
    returns the repository id. The recipe pushes ``output_dir/final`` this way: the model, its pair head, card,
    coverage reports and verifier, without the checkpoints or the rest of ``output_dir``."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model").repo_id
    api.upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        repo_type="model",
        commit_message="Upload the model trained with alc_hf's recipe",
    )
    return repo_id
