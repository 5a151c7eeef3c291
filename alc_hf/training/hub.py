"""The Hub check that runs before training: a push that can only fail after hours of training fails at once."""

from __future__ import annotations


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
