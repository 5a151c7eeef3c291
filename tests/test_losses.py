"""The loss modules: composition, masking, one encoder pass, configuration errors, pair head persistence."""

from __future__ import annotations

import json
import math

import pytest
import torch
from sentence_transformers.sentence_transformer.losses import (
    CachedMultipleNegativesRankingLoss,
    MatryoshkaLoss,
    MultipleNegativesRankingLoss,
)

from alc_hf import ALCLoss, HardestNegativeTripletLoss, MultiPositiveSoftmaxLoss, PairHead, TCMLoss
from alc_hf.losses.base import LossParts, ScoredBatch, label_ids_from_texts
from alc_hf.losses.pair_head import saved_pair_head
from alc_hf.training.loss_composition import build_loss

QUERIES = ["sony wh1000 black", "apple iphone 15 128gb", "usb c cable 2m", "dell xps 13 laptop", "bose qc45 white"]
LABELS = ["Sony WH-1000XM5 Black", "Apple iPhone 15 Blue", "USB-C Cable 2m", "Dell XPS 13 9340", "Bose QC45 White"]
NEGATIVES = ["Sony WH-1000XM4 Black", "Apple iPhone 14 Blue", "USB-A Cable 1m", "Dell XPS 15 9530", "Bose QC35 White"]


def features(model, *columns):
    return [model.preprocess(list(column)) for column in columns]


class ForwardCounter:
    """Counts rows the encoder embeds, through a forward hook on the model itself."""

    def __init__(self, model):
        self.calls = 0
        self.rows = 0
        model.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        self.calls += 1
        self.rows += output["sentence_embedding"].size(0)


@pytest.mark.parametrize(
    "build",
    [
        lambda m: TCMLoss(m, base_loss=ALCLoss(m)),
        lambda m: TCMLoss(m, base_loss=ALCLoss(m, base_loss=HardestNegativeTripletLoss(m))),
        lambda m: ALCLoss(m, base_loss=MultipleNegativesRankingLoss(m)),
        lambda m: TCMLoss(m, base_loss=MultipleNegativesRankingLoss(m)),
    ],
    ids=["tcm-alc-softmax", "tcm-alc-triplet", "alc-mnrl", "tcm-mnrl"],
)
def test_encoder_runs_once_per_text_column(tiny_model, build):
    loss = build(tiny_model)
    counter = ForwardCounter(tiny_model)
    parts = loss(features(tiny_model, QUERIES, LABELS, NEGATIVES), None)
    # Every text of every column is embedded exactly once, however the objectives are composed.
    assert counter.rows == 3 * len(QUERIES)
    assert counter.calls <= 3
    sum(parts.values()).backward()
    assert all(torch.isfinite(value) for value in parts.values())


def test_parts_are_named_and_weighted(tiny_model):
    batch = features(tiny_model, QUERIES, LABELS, NEGATIVES)
    torch.manual_seed(0)
    full = TCMLoss(tiny_model, base_loss=ALCLoss(tiny_model, ql_weight=1.0, qb_weight=1.0))
    assert set(full(batch, None)) == {"base", "ql", "qb", "tcm"}
    torch.manual_seed(0)
    weighted = TCMLoss(tiny_model, base_loss=ALCLoss(tiny_model, ql_weight=0.5, qb_weight=2.0), pos_weight=3.0)
    a, b = full(batch, None), weighted(batch, None)
    torch.testing.assert_close(b["ql"], 0.5 * a["ql"])
    torch.testing.assert_close(b["qb"], 2.0 * a["qb"])
    torch.testing.assert_close(b["base"], a["base"])
    assert set(ALCLoss(tiny_model, qb_weight=0.0)(batch, None)) == {"base", "ql"}
    assert torch.is_tensor(MultiPositiveSoftmaxLoss(tiny_model)(batch, None))


def test_alc_parts_match_a_loop_reference(tiny_model):
    loss = ALCLoss(tiny_model, num_negatives=3)
    batch = features(tiny_model, QUERIES, LABELS, NEGATIVES)
    parts = loss(batch, None)
    with torch.no_grad():
        q = torch.nn.functional.normalize(tiny_model(batch[0])["sentence_embedding"], dim=-1)
        cands = [torch.nn.functional.normalize(tiny_model(f)["sentence_embedding"], dim=-1) for f in batch[1:]]
    candidates = torch.cat(cands)  # all positives, then all negatives; every text differs: only row i's own is positive
    head = loss.pair_head.requires_grad_(False)
    ql_terms, qb_terms, base_terms = [], [], []
    for i in range(len(QUERIES)):
        scored = sorted(((float(q[i] @ candidates[j]), j) for j in range(len(candidates)) if j != i), reverse=True)
        hardest = [j for _, j in scored[:3]]
        pos_logit = float(head(q[i], candidates[i]))
        neg_logits = [float(head(q[i], candidates[j])) for j in hardest]
        ql_terms.append((math.log1p(math.exp(-pos_logit)) + math.log1p(math.exp(neg_logits[0]))) / 2)
        qb_terms.append(-pos_logit + math.log(math.exp(pos_logit) + sum(math.exp(x) for x in neg_logits)))
        positive = 20 * float(q[i] @ candidates[i])
        negatives = [20 * s for s, _ in scored]
        base_terms.append(-positive + math.log(math.exp(positive) + sum(math.exp(x) for x in negatives)))
    assert parts["ql"].item() == pytest.approx(sum(ql_terms) / len(ql_terms), rel=1e-4)
    assert parts["qb"].item() == pytest.approx(sum(qb_terms) / len(qb_terms), rel=1e-4)
    assert parts["base"].item() == pytest.approx(sum(base_terms) / len(base_terms), rel=1e-4)


def test_label_ids_mask_every_positive_of_a_query(tiny_model):
    # Rows 0 and 1 are the same query with two positives (ids 10, 11); row 2's label repeats id 10;
    # row 3's hard negative is id 11, a positive of query 0; -1 pads.
    labels = torch.tensor(
        [
            [10, 50, 11],
            [11, 51, 10],
            [10, 52, -1],
            [13, 11, -1],
        ]
    )
    embeddings = [torch.randn(4, 8) for _ in range(3)]
    batch = ScoredBatch.build(embeddings, labels, gather_across_devices=False)
    # Candidates: positives of rows 0..3 (ids 10, 11, 10, 13), then negatives of rows 0..3 (ids 50, 51, 52, 11).
    expected = torch.tensor(
        [
            [1, 1, 1, 0, 0, 0, 0, 1],
            [1, 1, 1, 0, 0, 0, 0, 1],
            [1, 0, 1, 0, 0, 0, 0, 0],
            [0, 0, 0, 1, 0, 0, 0, 0],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(batch.positive_mask, expected)
    assert torch.equal(batch.positive_index, torch.arange(4))


def test_identical_texts_are_the_same_label_without_label_column(tiny_model):
    queries = ["sony wh1000", "sony wh1000", "apple iphone", "usb cable"]
    labels = ["Sony WH-1000XM5", "Sony WH-1000XM5 Case", "Apple iPhone 15", "Sony WH-1000XM5"]
    batch_features = features(tiny_model, queries, labels)
    label_ids = label_ids_from_texts(batch_features, gather_across_devices=False)
    batch = ScoredBatch.build([torch.randn(4, 8), torch.randn(4, 8)], label_ids, gather_across_devices=False)
    expected = torch.tensor(
        [
            [1, 1, 0, 1],  # its label, the other row's positive for the same query text, the repeated label text
            [1, 1, 0, 1],
            [0, 0, 1, 0],
            [1, 0, 0, 1],  # row 3's label text equals row 0's label text
        ],
        dtype=torch.bool,
    )
    assert torch.equal(batch.positive_mask, expected)


def test_masked_positives_do_not_count_as_negatives_in_the_loss(tiny_model):
    # The same label twice in a batch: with ids, the duplicate is masked, so the loss equals the loss of a
    # batch where that duplicate is simply absent from the negatives.
    loss = MultiPositiveSoftmaxLoss(tiny_model)
    emb = [torch.randn(3, 16), torch.randn(3, 16)]
    emb[1][2] = emb[1][0]
    masked = loss.compute_loss_from_embeddings(emb, torch.tensor([[7], [8], [7]]))
    unmasked = loss.compute_loss_from_embeddings(emb, torch.tensor([[7], [8], [9]]))
    assert masked.item() < unmasked.item()


def test_batch_of_one_row_gives_finite_loss_and_gradients(tiny_model):
    loss = TCMLoss(tiny_model, base_loss=ALCLoss(tiny_model))
    parts = loss(features(tiny_model, QUERIES[:1], LABELS[:1]), None)
    assert parts["base"].item() == 0.0  # no negative: nothing to rank against
    assert parts["qb"].item() == 0.0
    assert parts["ql"].item() > 0.0  # the positive term of the pair head still trains
    assert torch.isfinite(parts["tcm"])
    sum(parts.values()).backward()
    for parameter in loss.parameters():
        if parameter.grad is not None:
            assert torch.isfinite(parameter.grad).all()
    triplet = HardestNegativeTripletLoss(tiny_model)(features(tiny_model, QUERIES[:1], LABELS[:1]), None)
    assert triplet.item() == 0.0


def test_label_column_width_is_checked(tiny_model):
    loss = ALCLoss(tiny_model)
    with pytest.raises(ValueError, match=r"'label' column has 1 entries per row but the batch has 2 label column"):
        loss(features(tiny_model, QUERIES, LABELS, NEGATIVES), torch.tensor([[1], [2], [3], [4], [5]]))
    with pytest.raises(ValueError, match="integer label ids"):
        loss(features(tiny_model, QUERIES, LABELS), torch.rand(5, 1))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda m: TCMLoss(m, pos_margin=1.5), r"pos_margin must be a cosine similarity in \[-1, 1\], got 1.5"),
        (lambda m: TCMLoss(m, neg_margin=-2), r"neg_margin must be a cosine similarity in \[-1, 1\], got -2"),
        (lambda m: TCMLoss(m, pos_margin=0.3, neg_margin=0.5), "neg_margin .* must be below pos_margin"),
        (lambda m: TCMLoss(m, pos_weight=-1), "pos_weight must be >= 0, got -1"),
        (lambda m: TCMLoss(m, neg_weight=-0.1), "neg_weight must be >= 0"),
        (lambda m: ALCLoss(m, ql_weight=-1), "ql_weight must be >= 0"),
        (lambda m: ALCLoss(m, qb_weight=float("nan")), "qb_weight must be >= 0"),
        (lambda m: ALCLoss(m, num_negatives=0), r"num_negatives \(k\) must be >= 1, got 0"),
        (lambda m: HardestNegativeTripletLoss(m, num_negatives=0), r"num_negatives \(k\) must be >= 1"),
        (lambda m: build_loss(m, base_loss="infonce"), "unknown base_loss 'infonce'"),
        (lambda m: MultiPositiveSoftmaxLoss(m, scale=0), "scale must be > 0"),
    ],
)
def test_bad_configuration_is_a_clear_error(tiny_model, build, message):
    with pytest.raises(ValueError, match=message):
        build(tiny_model)


def test_base_loss_that_cannot_share_embeddings_names_the_missing_method(tiny_model):
    # MatryoshkaLoss embeds through the model itself, so it cannot take embeddings computed once for everyone.
    matryoshka = MatryoshkaLoss(tiny_model, MultipleNegativesRankingLoss(tiny_model), matryoshka_dims=[32, 16])
    with pytest.raises(TypeError, match="MatryoshkaLoss: it has no compute_loss_from_embeddings"):
        ALCLoss(tiny_model, base_loss=matryoshka)


@pytest.mark.parametrize("wrapper", [ALCLoss, TCMLoss])
def test_a_gradient_caching_base_loss_is_refused_at_construction_with_what_to_use(tiny_model, wrapper):
    name = wrapper.__name__
    with pytest.raises(TypeError) as raised:
        wrapper(tiny_model, base_loss=CachedMultipleNegativesRankingLoss(tiny_model, mini_batch_size=2))
    message = str(raised.value)
    assert message.startswith(f"{name} cannot wrap CachedMultipleNegativesRankingLoss: {name} needs the embeddings of")
    assert "computes them in mini-batches" in message
    assert "wrap the whole loss instead: CachedLoss(TCMLoss(model, ALCLoss(model)), mini_batch_size=64)" in message
    assert "MultipleNegativesRankingLoss(model) (the recipe's 'mnrl')" in message


def reference_matryoshka_tcm(raw: list[torch.Tensor], dims: list[int]) -> dict[str, torch.Tensor]:
    """MatryoshkaLoss(TCMLoss(softmax)) by hand: at each dimension, truncate, renormalise, and add the multi-positive
    softmax (scale 20) and TCM (m+ 0.9, m- 0.5) over every (query, candidate) pair; every text differs, so only row
    i's own label is its positive."""
    parts = {"base": torch.zeros(()), "tcm": torch.zeros(())}
    for dim in dims:
        query, *columns = (torch.nn.functional.normalize(column[:, :dim], dim=-1) for column in raw)
        candidates = torch.cat(columns)
        base_terms, positive_violations, negative_violations = [], [], []
        for i in range(query.size(0)):
            scores = [query[i] @ candidates[j] for j in range(candidates.size(0))]
            positive = 20 * scores[i]
            logits = torch.stack([20 * s for s in scores])
            base_terms.append(torch.logsumexp(logits, dim=0) - positive)
            for j, score in enumerate(scores):
                if j == i and score < 0.9:
                    positive_violations.append(0.9 - score)
                elif j != i and score > 0.5:
                    negative_violations.append(score - 0.5)
        parts["base"] = parts["base"] + torch.stack(base_terms).mean()
        for violations in (positive_violations, negative_violations):
            if violations:
                parts["tcm"] = parts["tcm"] + torch.stack(violations).mean()
    return parts


def test_matryoshka_around_tcm_trains_every_dimension_as_computed_by_hand(tiny_model):
    tiny_model.eval()  # no dropout: the reference pass must see the same embeddings
    dims = [32, 16, 8]
    batch = features(tiny_model, QUERIES, LABELS, NEGATIVES)
    loss = MatryoshkaLoss(tiny_model, TCMLoss(tiny_model), matryoshka_dims=dims)
    parts = loss(batch, None)
    assert isinstance(parts, LossParts) and set(parts) == {"base", "tcm"}
    sum(parts.values()).backward()
    gradients = [p.grad.clone() for p in tiny_model.parameters() if p.grad is not None]
    tiny_model.zero_grad()
    reference = reference_matryoshka_tcm([tiny_model(f)["sentence_embedding"] for f in batch], dims)
    for name in ("base", "tcm"):
        assert parts[name].item() == pytest.approx(reference[name].item(), rel=1e-5), name
    # Not the full-dimension loss alone: the truncated dimensions count.
    assert (
        parts["base"].item()
        > 1.5 * reference_matryoshka_tcm([tiny_model(f)["sentence_embedding"] for f in batch], [32])["base"].item()
    )
    tiny_model.zero_grad()
    sum(reference.values()).backward()
    expected = [p.grad for p in tiny_model.parameters() if p.grad is not None]
    assert len(gradients) == len(expected) > 0
    for got, want in zip(gradients, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_loss_parts_weigh_and_sum_like_numbers():
    a = LossParts(base=torch.tensor(1.0), tcm=torch.tensor(2.0))
    b = LossParts(base=torch.tensor(10.0), qb=torch.tensor(4.0))
    summed = 0.0 + 2 * a + b / torch.tensor(2.0)
    assert set(summed) == {"base", "tcm", "qb"}
    assert [summed[n].item() for n in ("base", "tcm", "qb")] == [7.0, 4.0, 2.0]
    with pytest.raises(TypeError, match="cannot add Tensor .* such as AdaptiveLayerLoss, cannot wrap"):
        a + torch.tensor(1.0)
    with pytest.raises(TypeError, match="cannot add float"):
        a + 1.5


@pytest.mark.parametrize(
    "build",
    [lambda m: ALCLoss(m), lambda m: TCMLoss(m, base_loss=ALCLoss(m, base_loss=MultipleNegativesRankingLoss(m)))],
    ids=["alc", "tcm-alc-mnrl"],
)
def test_matryoshka_around_alc_fails_with_what_to_use_instead(tiny_model, build):
    loss = MatryoshkaLoss(tiny_model, build(tiny_model), matryoshka_dims=[32, 16])
    with pytest.raises(ValueError) as raised:
        loss(features(tiny_model, QUERIES, LABELS), None)
    message = str(raised.value)
    assert "pair head scores 32-dimensional embeddings (the model's), but this batch's are 16-dimensional" in message
    assert "MatryoshkaLoss(model, TCMLoss(model), matryoshka_dims=[...])" in message


def test_base_loss_on_another_model_is_rejected(tiny_model, tiny_encoder_dir):
    from tests.tiny_model import load_tiny_encoder

    other = load_tiny_encoder(tiny_encoder_dir)
    with pytest.raises(ValueError, match="same model"):
        TCMLoss(tiny_model, base_loss=ALCLoss(other))


def test_config_and_citation_document_the_composition(tiny_model):
    loss = TCMLoss(tiny_model, base_loss=ALCLoss(tiny_model, num_negatives=4), pos_margin=0.8)
    config = loss.get_config_dict()
    assert config["pos_margin"] == 0.8
    assert config["base_loss"].startswith("ALCLoss(base_loss='MultiPositiveSoftmaxLoss(scale=20.0")
    assert "num_negatives=4" in config["base_loss"]
    assert "2307.04047" in loss.citation
    assert "2510.04551" in loss.base_loss.citation


def test_pair_head_saves_loads_and_scores(tiny_model, tmp_path):
    loss = ALCLoss(tiny_model, pair_head_hidden_dim=16)
    directory = loss.save_pair_head(tmp_path / "model")
    assert directory == tmp_path / "model" / "pair_head"
    head = PairHead.from_pretrained(directory)
    assert head.hidden_dim == 16
    a, b = torch.randn(3, 32), torch.randn(3, 32)
    torch.testing.assert_close(head(a, b), loss.pair_head(a, b))
    probabilities = head.score_texts(tiny_model, QUERIES[:2], LABELS[:2])
    assert probabilities.shape == (2,)
    assert ((probabilities > 0) & (probabilities < 1)).all()
    with pytest.raises(ValueError, match="as many queries as labels"):
        head.score_texts(tiny_model, QUERIES[:2], LABELS[:1])
    with pytest.raises(FileNotFoundError, match="no pair head in"):
        PairHead.from_pretrained(tmp_path)


def test_pair_head_loads_from_a_model_folder_its_own_folder_or_a_hub_id(tiny_model, tmp_path, fake_hub):
    """The head's mixin files live in ``pair_head/`` and leave the encoder's config.json and model.safetensors alone;
    a model folder, the head's folder and a Hub id of either give back the same head."""
    torch.manual_seed(3)
    loss = ALCLoss(tiny_model, pair_head_hidden_dim=16)
    model_dir = tmp_path / "model"
    tiny_model.save_pretrained(str(model_dir))
    encoder_files = {name: (model_dir / name).read_bytes() for name in ("config.json", "model.safetensors")}
    loss.save_pair_head(model_dir)
    assert {name: (model_dir / name).read_bytes() for name in encoder_files} == encoder_files
    assert sorted(path.name for path in (model_dir / "pair_head").iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    assert json.loads((model_dir / "pair_head" / "config.json").read_text()) == {
        "embedding_dim": 32,
        "hidden_dim": 16,
    }
    head_only = tmp_path / "head_only"
    loss.pair_head.save_pretrained(head_only)  # what head.push_to_hub(repo) publishes
    fake_hub.publish("someone/alc-model", model_dir)
    fake_hub.publish("someone/alc-head", head_only)
    hub = {"cache_dir": fake_hub.root, "local_files_only": True}
    heads = [
        PairHead.from_pretrained(model_dir),
        PairHead.from_pretrained(model_dir / "pair_head"),
        PairHead.from_pretrained(head_only),
        PairHead.from_pretrained("someone/alc-model", **hub),
        PairHead.from_pretrained("someone/alc-head", **hub),
    ]
    a, b = torch.randn(5, 32), torch.randn(5, 32)
    expected = loss.pair_head(a, b)
    for head in heads:
        assert head.hidden_dim == 16
        assert torch.equal(head(a, b), expected)

    # A model without a head, and places that hold nothing, say so.
    bare = tmp_path / "bare"
    tiny_model.save_pretrained(str(bare))
    assert saved_pair_head(bare) is None
    with pytest.raises(FileNotFoundError, match=f"no pair head in {bare}"):
        PairHead.from_pretrained(bare)
    with pytest.raises(FileNotFoundError, match="cannot fetch the pair head of someone/unpublished"):
        PairHead.from_pretrained("someone/unpublished", **hub)
    with pytest.raises(FileNotFoundError, match="neither a local folder nor a Hub repository id"):
        PairHead.from_pretrained(tmp_path / "no" / "such" / "folder")
    # A head whose weights do not match its config is an error, not a silently random layer.
    (model_dir / "pair_head" / "config.json").write_text(json.dumps({"embedding_dim": 32, "hidden_dim": 8}))
    with pytest.raises(RuntimeError, match="layers.0.weight"):
        PairHead.from_pretrained(model_dir)


def test_linear_pair_head_saves_and_loads(tiny_model, tmp_path):
    loss = ALCLoss(tiny_model, pair_head_hidden_dim=0)
    assert [type(layer) for layer in loss.pair_head.layers] == [torch.nn.Linear]
    assert loss.pair_head.layers[0].weight.shape == (1, 4 * 32)
    assert "pair_head='Linear(128, 1)'" in TCMLoss(tiny_model, base_loss=loss).get_config_dict()["base_loss"]
    head = PairHead.from_pretrained(loss.save_pair_head(tmp_path))
    a, b = torch.randn(3, 32), torch.randn(3, 32)
    torch.testing.assert_close(head(a, b), loss.pair_head(a, b))
    with pytest.raises(ValueError, match="hidden_dim must be >= 0"):
        PairHead(32, -1)


def encoder_gradient_of(loss, model, part, embeddings):
    """The encoder's gradient norm from one loss part alone, and whether the pair head got a gradient."""
    model.zero_grad()
    loss.pair_head.zero_grad()
    parts = loss.compute_loss_from_embeddings([e() for e in embeddings], None)
    parts[part].backward()
    encoder = sum(float(p.grad.norm()) for p in model.parameters() if p.grad is not None)
    head = sum(float(p.grad.norm()) for p in loss.pair_head.parameters() if p.grad is not None)
    return encoder, head


@pytest.mark.parametrize("part", ["ql", "qb"])
def test_head_warmup_keeps_the_head_off_the_encoder_for_its_first_steps(tiny_model, part):
    loss = ALCLoss(tiny_model, num_negatives=3, head_warmup_steps=2)
    columns = features(tiny_model, QUERIES, LABELS, NEGATIVES)
    embeddings = [lambda f=f: tiny_model(f)["sentence_embedding"] for f in columns]
    loss.eval()  # evaluation does not count as a training step
    loss.compute_loss_from_embeddings([e() for e in embeddings], None)
    assert int(loss.training_steps_seen) == 0
    loss.train()
    for step in range(4):
        encoder, head = encoder_gradient_of(loss, tiny_model, part, embeddings)
        assert head > 0, f"step {step}: the head must learn during the warm-up too"
        assert (encoder == 0) == (step < 2), f"step {step}: encoder gradient {encoder}"
    assert int(loss.training_steps_seen) == 4
    assert "training_steps_seen" in loss.state_dict(), "a resumed run must continue the count"
    with pytest.raises(ValueError, match="head_warmup_steps must be >= 0"):
        ALCLoss(tiny_model, head_warmup_steps=-1)


def test_alc_and_tcm_train_under_bf16_autocast_on_the_cpu(tiny_model, tmp_path, monkeypatch):
    """Users train with ``--mixed_precision bf16`` on GPUs; with no GPU here, the trainer's CPU autocast is the
    closest honest check of what each part sees (docs/losses.md, "Mixed precision")."""
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    from alc_hf.data import builtin_catalog, training_rows
    from alc_hf.losses import tcm as tcm_module
    from alc_hf.training import UniqueQueryLabelBatchSampler

    seen: dict[str, set[torch.dtype]] = {"encoder": set(), "head input": set(), "head logits": set(), "tcm": set()}
    encoder_linear = next(module for module in tiny_model.modules() if isinstance(module, torch.nn.Linear))
    encoder_linear.register_forward_hook(lambda module, inputs, output: seen["encoder"].add(output.dtype))
    loss = TCMLoss(tiny_model, base_loss=ALCLoss(tiny_model, num_negatives=3))
    pair_head = loss.loss.pair_head

    def record_head(module, inputs, logits):
        seen["head input"].update(tensor.dtype for tensor in inputs)
        seen["head logits"].add(logits.dtype)

    pair_head.register_forward_hook(record_head)
    violation_sums = tcm_module.tcm_violation_sums

    def record_tcm(scores, *args, **kwargs):
        seen["tcm"].add(scores.dtype)
        return violation_sums(scores, *args, **kwargs)

    monkeypatch.setattr(tcm_module, "tcm_violation_sums", record_tcm)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path),
        max_steps=3,
        per_device_train_batch_size=8,
        bf16=True,
        use_cpu=True,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        batch_sampler=UniqueQueryLabelBatchSampler,
    )
    rows = training_rows(builtin_catalog(num_products=40)).select(range(32))
    trainer = SentenceTransformerTrainer(model=tiny_model, args=args, train_dataset=rows, loss=loss)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 3
    assert all(math.isfinite(entry[part]) for entry in logged for part in ("loss", "base", "ql", "qb", "tcm"))
    assert seen["encoder"] == {torch.bfloat16}, "autocast was not on: the test would prove nothing"
    # accelerate autocasts the encoder's forward only: scores, mining, the backbone, TCM and the head are float32.
    assert seen["tcm"] == {torch.float32}
    assert seen["head input"] == seen["head logits"] == {torch.float32}
    assert {parameter.dtype for parameter in pair_head.parameters()} == {torch.float32}


def test_a_loss_called_inside_autocast_still_scores_in_float32(tiny_model):
    """Code that runs the whole loss in its own autocast region: the scores stay float32, the head's matmuls take
    the autocast dtype, and every part is a finite float32."""
    loss = TCMLoss(tiny_model, base_loss=ALCLoss(tiny_model, num_negatives=3))
    logits_dtypes = set()
    loss.loss.pair_head.register_forward_hook(lambda module, inputs, logits: logits_dtypes.add(logits.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        embeddings = [tiny_model(f)["sentence_embedding"] for f in features(tiny_model, QUERIES, LABELS, NEGATIVES)]
        batch = ScoredBatch.build(embeddings, None, gather_across_devices=False)
        parts = loss.compute_loss_from_embeddings(embeddings, None)
    assert batch.scores.dtype == batch.queries.dtype == batch.candidates.dtype == torch.float32
    assert logits_dtypes == {torch.bfloat16}
    assert all(part.dtype == torch.float32 and torch.isfinite(part) for part in parts.values())
