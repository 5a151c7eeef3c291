"""The bi-encoder on onnxruntime, for CPU traffic: the transformer exported once with ``torch.onnx`` (optionally with
its weights quantized to int8), run by onnxruntime, with the model's own tokenizer, pooling and normalisation.

sentence-transformers' own ``backend="onnx"`` / ``"openvino"`` need ``optimum-onnx`` / ``optimum-intel``, whose
releases require transformers below the version this project pins; onnxruntime itself has no such requirement, so the
export and the session are done here. Backends (:data:`BACKENDS`): ``torch`` (the model as loaded), ``onnx`` (fp32:
the same embeddings within float rounding) and ``onnx-int8`` (the linear layers in int8 but the feed-forward
down-projections, smoothed first: about 2x the torch model on a CPU; activations are quantized per batch, so an
embedding also moves a little with the texts batched beside it). A threshold certified on one
backend holds for its scores only, so ``alc-hf certify`` records the backend and ``alc-hf match`` refuses another.

Supported: a Transformer followed by mean or CLS pooling and an optional Normalize, the layout of all-MiniLM-L6-v2
and most sentence-transformers bi-encoders; another layout is refused with its modules named."""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BACKENDS", "OnnxEncoder", "check_backend"]

BACKENDS = ("torch", "onnx", "onnx-int8")
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_MODEL_FILE = "encoder.onnx"
# The int8 export (:func:`_smoothed`, :func:`_quantize`); α chosen by the fidelity of all-MiniLM-L6-v2's int8
# embeddings to its fp32 ones on Walmart-Amazon's catalog titles (no label read).
SMOOTHING_ALPHA = 0.8
CALIBRATION_TEXTS = 256
# onnxruntime quantizes activations per tensor, over the whole batch: smaller batches get finer scales. On
# all-MiniLM-L6-v2 and Walmart-Amazon, 16 texts a batch embedded faster than 64 (less padding) and changed fewer
# decisions: 1.20% against 1.71% (docs/benchmarks.md, "Deciding new traffic").
QUANTIZED_BATCH_SIZE = 16
_EXPORT_SCHEME = "2"  # part of an export's cache key: an export made by an earlier scheme is not reused


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    return backend


def _layout(model: Any) -> tuple[Any, str, bool]:
    """The transformer module, the pooling mode, and whether the embeddings are normalised; a ValueError naming the
    modules for any other layout."""
    modules = list(model.children())
    names = [type(module).__name__ for module in modules]
    pooling = modules[1] if len(modules) > 1 and names[1] == "Pooling" else None
    mode = getattr(pooling, "pooling_mode", None) if pooling is not None else None
    if not names or names[0] != "Transformer" or mode not in ("mean", "cls") or names[2:] not in ([], ["Normalize"]):
        raise ValueError(
            f"the onnx backend runs a Transformer with mean or CLS pooling and an optional Normalize; this model is "
            f"{' -> '.join(names)}{f' (pooling {mode})' if mode else ''}: use --backend torch"
        )
    return modules[0], mode, names[2:] == ["Normalize"]


class OnnxEncoder:
    """A bi-encoder run by onnxruntime, with the ``encode_query`` / ``encode_document`` of a SentenceTransformer
    (what :func:`alc_hf.models.embed_texts` calls), so the evaluator, ``alc-hf certify`` and the Matcher take it in
    its place. Build it with :meth:`from_sentence_transformer`."""

    def __init__(self, session: Any, tokenizer: Any, max_length: int, pooling: str, normalize: bool, backend: str):
        self.session, self.tokenizer, self.max_length = session, tokenizer, max_length
        self.pooling, self.normalize, self.backend = pooling, normalize, backend
        self._inputs = {item.name for item in session.get_inputs()}

    @classmethod
    def from_sentence_transformer(
        cls, model: Any, backend: str, cache_dir: str | Path, fingerprint: str, threads: int | None = None
    ) -> OnnxEncoder:
        """Export ``model``'s transformer for ``backend`` (``onnx`` or ``onnx-int8``) into ``cache_dir``, under
        ``fingerprint`` (the encoder's files, :func:`alc_hf.evaluation.matcher.model_fingerprint`), or reuse the
        export already there; return the encoder on onnxruntime."""
        import onnxruntime

        if check_backend(backend) == "torch":
            raise ValueError("the torch backend is the model itself: no OnnxEncoder is needed")
        transformer, pooling, normalize = _layout(model)
        key = hashlib.sha256(f"{fingerprint}:{backend}:{_EXPORT_SCHEME}".encode()).hexdigest()[:32]
        folder = Path(cache_dir) / f"encoder-{key}"
        if not (folder / _MODEL_FILE).is_file():
            folder.parent.mkdir(parents=True, exist_ok=True)
            partial = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
            try:
                _export(transformer, model.tokenizer, partial / _MODEL_FILE, quantize=backend == "onnx-int8")
                if folder.exists():  # another process exported it meanwhile
                    shutil.rmtree(partial)
                else:
                    os.replace(partial, folder)
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(str(folder / _MODEL_FILE), options, providers=["CPUExecutionProvider"])
        return cls(session, model.tokenizer, model.max_seq_length, pooling, normalize, backend)

    def encode_query(self, texts: Sequence[str], **options: Any) -> np.ndarray:
        return self.encode(texts, **options)

    def encode_document(self, texts: Sequence[str], **options: Any) -> np.ndarray:
        return self.encode(texts, **options)

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        show_progress_bar: bool = False,
        convert_to_numpy: bool = True,
        normalize_embeddings: bool = False,
    ) -> np.ndarray:
        """``[n, dim]`` float32 embeddings of ``texts``, batched longest first as sentence-transformers does (less
        padding), returned in the input order; int8 batches hold at most :data:`QUANTIZED_BATCH_SIZE` texts."""
        from tqdm.auto import tqdm

        if self.backend == "onnx-int8":
            batch_size = min(batch_size, QUANTIZED_BATCH_SIZE)
        texts = list(texts)
        order = np.argsort([-len(text) for text in texts], kind="stable")
        parts = []
        starts = range(0, len(texts), batch_size)
        for start in tqdm(starts, desc="Batches", disable=not show_progress_bar):
            batch = [texts[i] for i in order[start : start + batch_size]]
            features = self.tokenizer(
                batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="np"
            )
            feeds = {name: features[name].astype(np.int64) for name in _INPUTS if name in self._inputs}
            if "token_type_ids" in self._inputs and "token_type_ids" not in features:
                feeds["token_type_ids"] = np.zeros_like(feeds["input_ids"])
            hidden = self.session.run(None, feeds)[0]
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = features["attention_mask"][..., None].astype(np.float32)
                pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
            parts.append(pooled.astype(np.float32))
        embeddings = np.empty((len(texts), parts[0].shape[1] if parts else 0), dtype=np.float32)
        if parts:
            embeddings[order] = np.concatenate(parts)
        if self.normalize or normalize_embeddings:
            embeddings /= np.clip(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12, None)
        return embeddings


def _export(transformer: Any, tokenizer: Any, path: Path, quantize: bool) -> None:
    """The transformer's graph with dynamic batch and sequence axes (the TorchScript exporter: the transformer's
    attention mask handling traces into a graph that holds for every shape); with ``quantize``, the int8 graph of
    :func:`_quantize`."""
    import torch

    class LastHiddenState(torch.nn.Module):
        """What is exported: the transformer's token embeddings from its three inputs, as positional arguments."""

        def __init__(self, auto_model: Any) -> None:
            super().__init__()
            self.transformer = auto_model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    auto_model = _smoothed(transformer.auto_model, tokenizer) if quantize else transformer.auto_model
    module = LastHiddenState(auto_model).eval()
    example = tokenizer(["a short title", "a somewhat longer product title"], padding=True, return_tensors="pt")
    arguments = tuple(example[name] if name in example else torch.zeros_like(example["input_ids"]) for name in _INPUTS)
    axes = {name: {0: "batch", 1: "sequence"} for name in (*_INPUTS, "last_hidden_state")}
    exported = path.with_name("fp32.onnx") if quantize else path
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export, which does not yet trace these models'
        # attention masks; its tracer warnings are about branches that hold for every shape here.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            arguments,
            str(exported),
            input_names=list(_INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    if quantize:
        _quantize(exported, path)
        exported.unlink()


def _smoothed(auto_model: Any, tokenizer: Any) -> Any:
    """A copy of the transformer that computes the same function and loses less to int8 (SmoothQuant, Xiao et al.,
    ICML 2023): each linear layer that :func:`_quantize` quantizes computes ``(x / s) @ (W diag(s))^T + b``, where
    ``s_j = max|x_j|^a / max|W_:j|^(1-a)`` moves the few input channels with outlier activations into the weights,
    which are quantized per channel. ``max|x_j|`` is measured on :data:`CALIBRATION_TEXTS` random texts decoded
    from the model's own vocabulary, so the export depends on the model alone and certify and match, whatever
    their catalogs, run the same scores."""
    import torch

    class SmoothedLinear(torch.nn.Module):
        def __init__(self, linear: Any, scale: Any) -> None:
            super().__init__()
            self.register_buffer("inverse_scale", 1.0 / scale)
            self.linear = copy.deepcopy(linear)
            with torch.no_grad():
                self.linear.weight.mul_(scale)  # [out, in] * [in]

        def forward(self, hidden: Any) -> Any:
            return self.linear(hidden * self.inverse_scale)

    model = copy.deepcopy(auto_model).eval()
    targets = {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module.in_features <= module.out_features
    }
    peaks = {name: torch.zeros(module.in_features) for name, module in targets.items()}

    def record_peak(name: str) -> Any:
        def hook(module: Any, inputs: tuple, output: Any) -> None:
            torch.maximum(peaks[name], inputs[0].detach().abs().flatten(0, -2).amax(0), out=peaks[name])

        return hook

    handles = [module.register_forward_hook(record_peak(name)) for name, module in targets.items()]
    rng = np.random.default_rng(0)
    special = set(tokenizer.all_special_ids)
    vocabulary = np.array([i for i in range(len(tokenizer)) if i not in special])
    texts = [
        tokenizer.decode(rng.choice(vocabulary, size=int(rng.integers(4, 32))).tolist())
        for _ in range(CALIBRATION_TEXTS)
    ]
    try:
        with torch.no_grad():
            for start in range(0, len(texts), 32):
                model(**tokenizer(texts[start : start + 32], padding=True, truncation=True, return_tensors="pt"))
    finally:
        for handle in handles:
            handle.remove()
    for name, module in targets.items():
        weight_peaks = module.weight.detach().abs().amax(0).clamp(min=1e-5)  # [in]
        scale = peaks[name].clamp(min=1e-5) ** SMOOTHING_ALPHA / weight_peaks ** (1 - SMOOTHING_ALPHA)
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent), leaf, SmoothedLinear(module, scale))
    return model


def _quantize(exported: Path, path: Path) -> None:
    """``exported``'s linear layers quantized to int8 (weights per channel, activations per tensor on the fly),
    except the down-projections (``in > out``: the feed-forward block's second layer, whose input, the activation
    function's output, holds outliers that per-tensor int8 cannot resolve: on all-MiniLM-L6-v2 they held most of the
    embedding error). Attention's own products stay in float."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(exported), load_external_data=False).graph
    weights = {initializer.name: initializer.dims for initializer in graph.initializer}
    linear = [
        node.name
        for node in graph.node
        if node.op_type == "MatMul"
        and node.input[1] in weights
        and weights[node.input[1]][0] <= weights[node.input[1]][1]
    ]
    # onnxruntime advises pre-processing on the root logger; it changes nothing here.
    logging.disable(logging.WARNING)
    try:
        quantize_dynamic(
            str(exported),
            str(path),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
            nodes_to_quantize=linear,
        )
    finally:
        logging.disable(logging.NOTSET)
