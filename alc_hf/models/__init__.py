"""The models a run loads and uses, not trains: the bi-encoder (loaded offline when installed, and how texts are
embedded) and the cross-encoder verifier (its starting point, loading, checks and probabilities). The ALC pair head
is the loss's (:class:`alc_hf.losses.PairHead`). Parts are imported on first use."""

from typing import TYPE_CHECKING

from alc_hf._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "alc_hf.models.encoder": (
            "DEFAULT_MODEL",
            "ModelLoadError",
            "embed_texts",
            "load_encoder",
            "resolve_model_path",
        ),
        "alc_hf.models.verifier": ("check_verifier", "initial_verifier", "load_verifier", "verifier_probabilities"),
        "alc_hf.models.onnx_encoder": ("BACKENDS", "OnnxEncoder"),
    },
)

if TYPE_CHECKING:
    from alc_hf.models.encoder import DEFAULT_MODEL, ModelLoadError, embed_texts, load_encoder, resolve_model_path
    from alc_hf.models.onnx_encoder import BACKENDS, OnnxEncoder
    from alc_hf.models.verifier import check_verifier, initial_verifier, load_verifier, verifier_probabilities
