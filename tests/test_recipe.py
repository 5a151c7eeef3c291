"""The training recipe end to end: one process and two, LoRA, resuming, the Hub check, and its outputs."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from alc_hf import ALCLoss, PairHead, TCMLoss
from alc_hf.training.checkpoints import checkpoint_to_resume
from alc_hf.training.config import LossArguments, parse_recipe_arguments
from alc_hf.training.hub import HubUnavailableError
from alc_hf.training.lora import LoraUnavailableError
from alc_hf.training.loss_composition import build_loss, find_pair_head
from alc_hf.training.run import finish_run

REPO_ROOT = Path(__file__).resolve().parent.parent
RECIPE = REPO_ROOT / "recipes" / "train_alc.py"
# A small, fast run: 160 catalog rows, batch 16, 4 steps, no evaluation before training unless asked.
SMALL_RUN = [
    "--max_steps",
    "4",
    "--per_device_train_batch_size",
    "16",
    "--logging_steps",
    "2",
    "--num_negatives",
    "3",
    "--max_train_samples",
    "160",
    "--learning_rate",
    "1e-3",
    "--per_device_eval_batch_size",
    "256",
]


def train_program():
    """The train program that ``recipes/train_alc.py`` and ``alc-hf train`` run: its options and ``main``, whose
    parts a test may patch."""
    from alc_hf.training import train

    return train


def run_recipe(tiny_encoder_dir: Path, output_dir: Path, *extra: str) -> None:
    train_program().main(
        ["--model_name_or_path", str(tiny_encoder_dir), "--output_dir", str(output_dir), *SMALL_RUN, *extra]
    )


def test_recipe_trains_evaluates_and_writes_every_output(tiny_encoder_dir, tmp_path, capsys):
    run_recipe(tiny_encoder_dir, tmp_path)
    printed = capsys.readouterr().out
    final = tmp_path / "final"
    assert f"model and card: {final}" in printed
    assert re.search(r"base [\d.]+ -> [\d.]+, ql [\d.]+ -> [\d.]+, qb [\d.]+ -> [\d.]+, tcm", printed)
    assert re.search(r"c@1_p90\s+[\d.]+\s+[\d.]+", printed), printed
    assert (final / "model.safetensors").is_file()
    assert PairHead.from_pretrained(final / "pair_head").embedding_dim == 32
    for name in ("coverage_before", "coverage_after"):
        report = json.loads((final / f"{name}.json").read_text())
        assert report["splits"]["test"]["num_queries"] == 900
        assert (final / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    log = json.loads((tmp_path / "training_log.json").read_text())
    assert any("loss" in entry and "qb" in entry for entry in log)
    card = (final / "README.md").read_text()
    # The card states the losses, the data, and coverage before and after training side by side.
    assert "TCMLoss" in card and "ALCLoss" in card and "builtin_catalog(seed=0, split=trn)" in card
    assert re.search(r"\| \*\*c@1_p90\*\* +\| \*\*[\d.]+\*\* +\| \*\*[\d.]+\*\*", card)
    assert "catalog_before_training" in card


@pytest.mark.parametrize("cached", [[], ["--mini_batch_size", "5"]], ids=["uncached", "cached"])
def test_two_processes_gather_negatives_and_save_one_model(tiny_encoder_dir, tmp_path, cached):
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "29533",
        str(RECIPE),
        "--model_name_or_path",
        str(tiny_encoder_dir),
        "--output_dir",
        str(tmp_path),
        *SMALL_RUN,
        "--evaluate_before_training",
        "false",
        "--use_cpu",
        "true",
        *cached,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(command, capture_output=True, text=True, timeout=420, env=env, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-4000:]
    # Each query was scored against the 16 candidates of both processes; the summary comes from one process.
    assert completed.stdout.count("in-batch candidates per query (last step): 32 over 2 process(es)") == 1
    assert completed.stdout.count("model and card:") == 1
    assert (tmp_path / "final" / "model.safetensors").is_file()
    # One set of reports: the cosine's, and the pair head's and the combined score's (the ALC head is trained).
    assert sorted(p.name for p in (tmp_path / "final").iterdir() if p.name.startswith("coverage")) == [
        "coverage_after.json",
        "coverage_after.png",
        "coverage_after_combined.json",
        "coverage_after_combined.png",
        "coverage_after_pair_head.json",
        "coverage_after_pair_head.png",
    ]


class Interrupted(Exception):
    pass


def test_resuming_an_interrupted_run_gives_the_same_weights(tiny_encoder_dir, tmp_path, monkeypatch, capsys):
    checkpointing = [
        "--save_strategy",
        "steps",
        "--save_steps",
        "2",
        "--evaluate_before_training",
        "false",
        "--max_steps",
        "6",
    ]
    run_recipe(tiny_encoder_dir, tmp_path / "straight", *checkpointing)

    original_step = SentenceTransformerTrainer.training_step
    calls = []

    def crash_after_three_steps(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            raise Interrupted("simulated crash in step 4")
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(SentenceTransformerTrainer, "training_step", crash_after_three_steps)
    with pytest.raises(Interrupted):
        run_recipe(tiny_encoder_dir, tmp_path / "resumed", *checkpointing)
    monkeypatch.setattr(SentenceTransformerTrainer, "training_step", original_step)
    assert not (tmp_path / "resumed" / "final").exists()
    run_recipe(
        tiny_encoder_dir,
        tmp_path / "resumed",
        *checkpointing,
        "--resume_from_checkpoint",
        "last",  # checkpoint-2, the newest the crash left
    )
    assert f"Resuming from {tmp_path / 'resumed' / 'checkpoint-2'}\n" in capsys.readouterr().out
    straight = load_file(tmp_path / "straight" / "final" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "final" / "model.safetensors")
    assert straight.keys() == resumed.keys()
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], rtol=1e-5, atol=1e-6, msg=name)
    straight_head = PairHead.from_pretrained(tmp_path / "straight" / "final" / "pair_head")
    resumed_head = PairHead.from_pretrained(tmp_path / "resumed" / "final" / "pair_head")
    for (name, a), (_, b) in zip(straight_head.state_dict().items(), resumed_head.state_dict().items(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=f"pair head {name}")


def test_resume_last_picks_the_newest_checkpoint_and_fails_clearly_without_one(tiny_encoder_dir, tmp_path):
    for step in (2, 10, 9):
        (tmp_path / "run" / f"checkpoint-{step}").mkdir(parents=True)
    assert checkpoint_to_resume("last", tmp_path / "run") == str(tmp_path / "run" / "checkpoint-10")
    explicit = str(tmp_path / "run" / "checkpoint-2")
    assert checkpoint_to_resume(explicit, tmp_path / "run") == explicit
    # No checkpoint: the recipe stops before any work, saying how checkpoints are written.
    with pytest.raises(FileNotFoundError, match=r"last: no checkpoint-N folder in .*empty.*--save_strategy steps"):
        run_recipe(tiny_encoder_dir, tmp_path / "empty", "--resume_from_checkpoint", "last")
    assert not (tmp_path / "empty").exists(), "it started before failing"
    with pytest.raises(FileNotFoundError, match="checkpoint-7: no such checkpoint folder"):
        run_recipe(tiny_encoder_dir, tmp_path / "run", "--resume_from_checkpoint", str(tmp_path / "checkpoint-7"))


def test_the_example_config_file_runs_with_command_line_overrides(tiny_encoder_dir, tmp_path):
    command = [
        sys.executable,
        str(RECIPE),
        str(REPO_ROOT / "recipes" / "catalog_alc.yaml"),
        "--max_steps", "2",
        "--model_name_or_path", str(tiny_encoder_dir),
        "--output_dir", str(tmp_path / "run"),
        "--per_device_train_batch_size", "16",
        "--max_train_samples", "160",
        "--per_device_eval_batch_size", "256",
    ]  # fmt: skip
    pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": pythonpath}
    completed = subprocess.run(command, capture_output=True, text=True, timeout=420, env=env, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "Trained 2 steps." in completed.stdout
    final = tmp_path / "run" / "final"
    assert PairHead.from_pretrained(final).embedding_dim == 32
    for name in ("coverage_before", "coverage_after"):
        assert (final / f"{name}.json").is_file() and (final / f"{name}.png").is_file()
    assert (tmp_path / "run" / "training_log.json").is_file()
    # The file's settings reached the model and the loss (the card records them; the tiny encoder's own length is 48).
    card = (final / "README.md").read_text()
    assert "**Maximum Sequence Length:** 32 tokens" in card
    assert '"pos_margin": 0.9' in card and "num_negatives=2" in card


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_the_command_line_overrides_the_file_which_overrides_the_recipe_defaults(tmp_path):
    arguments = train_program().ARGUMENTS
    config = write_config(
        tmp_path / "run.yaml",
        "max_steps: 7\nlearning_rate: 1e-4\nnum_negatives: 3\nalc: false\n"
        "target_precisions: [0.8]\nlora_target_modules: query\n",
    )
    model_args, _, _, loss_args, _, calibration_args, _, _, args = parse_recipe_arguments(
        arguments, [str(config), "--max_steps", "2", "--num_negatives", "5"]
    )
    assert (args.max_steps, loss_args.num_negatives) == (2, 5)  # the command line
    # The file (YAML reads 1e-4 as a string: it is converted like the command line's).
    assert args.learning_rate == 1e-4 and loss_args.alc is False and calibration_args.target_precisions == [0.8]
    assert model_args.lora_target_modules == ["query"]
    assert args.per_device_train_batch_size == 64 and args.save_strategy == "no"  # the recipe's defaults
    assert loss_args.pos_margin == 0.9  # the option's own default

    as_json = write_config(tmp_path / "run.json", json.dumps({"max_steps": 3, "output_dir": "from_file"}))
    *_, args = parse_recipe_arguments(arguments, ["--output_dir", "from_line", "--config", str(as_json)])
    assert (args.max_steps, args.output_dir) == (3, "from_line")
    *_, args = parse_recipe_arguments(arguments, [f"--config={as_json}"])
    assert args.output_dir == "from_file"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_stepz: 2\n", r"unknown option 'max_stepz' \(did you mean 'max_steps'\?\)"),
        ("zzz: 1\n", r"unknown option 'zzz' \(the options are those of --help"),
        ("max_steps: [1, 2]\n", "option 'max_steps' takes one value, got the list"),
        ("- max_steps\n", "expected a mapping of option names to values, found a list"),
        ("max_steps: [\n", "cannot be read"),
    ],
)
def test_a_bad_config_file_names_the_file_and_the_key(tmp_path, text, message):
    config = write_config(tmp_path / "bad.yaml", text)
    with pytest.raises(ValueError, match=f"config file {re.escape(str(config))}.* {message}"):
        parse_recipe_arguments(train_program().ARGUMENTS, [str(config)])


def test_config_file_arguments_are_checked(tmp_path):
    arguments = train_program().ARGUMENTS
    config = write_config(tmp_path / "run.yaml", "max_steps: 2\n")
    with pytest.raises(ValueError, match="one config file at a time"):
        parse_recipe_arguments(arguments, [str(config), "--config", str(config)])
    with pytest.raises(FileNotFoundError, match="config file .*missing.yaml does not exist"):
        parse_recipe_arguments(arguments, ["--config", str(tmp_path / "missing.yaml")])
    with pytest.raises(ValueError, match=r"expected one of \('.yaml', '.yml', '.json'\), got .txt"):
        parse_recipe_arguments(arguments, ["--config", str(tmp_path / "run.txt")])
    with pytest.raises(ValueError, match="--config needs a file name"):
        parse_recipe_arguments(arguments, ["--max_steps", "2", "--config"])


def test_lora_saves_an_adapter_that_reloads_with_identical_embeddings(tiny_encoder_dir, tmp_path):
    run_recipe(tiny_encoder_dir, tmp_path, "--lora_r", "4", "--evaluate_before_training", "false")
    final = tmp_path / "final"
    assert (final / "adapter_config.json").is_file() and (final / "adapter_model.safetensors").is_file()
    assert not (final / "model.safetensors").exists(), "a LoRA run must save the adapter, not the whole encoder"
    card = (final / "README.md").read_text()
    assert f"LoRA adapter (r=4) for {tiny_encoder_dir}" in card
    texts = ["sony wh-1000xm5 black", "apple iphone 15 128gb"]
    trained = load_recipe_model_from_run(tmp_path)
    reloaded = SentenceTransformer(str(final))
    np.testing.assert_allclose(reloaded.encode(texts), trained.encode(texts), rtol=1e-5, atol=1e-6)
    base = SentenceTransformer(str(tiny_encoder_dir))
    assert not np.allclose(base.encode(texts), trained.encode(texts), atol=1e-4), "the adapter changed nothing"


def test_lora_with_an_incompatible_peft_fails_before_reading_data(tiny_encoder_dir, tmp_path, monkeypatch):
    import peft
    import transformers

    # As transformers 5.24 does with PEFT 0.21: it refuses every PEFT below its minimum.
    monkeypatch.setattr("transformers.integrations.peft.MIN_PEFT_VERSION", "99.0.0")
    missing_data = tmp_path / "no_such_folder"
    with pytest.raises(LoraUnavailableError) as raised:
        run_recipe(
            tiny_encoder_dir, tmp_path / "run", "--lora_r", "4", "--data", "wdc", "--data_dir", str(missing_data)
        )
    message = str(raised.value)
    assert f"transformers {transformers.__version__}" in message and f"PEFT {peft.__version__}" in message
    assert "PEFT >= 99.0.0" in message and "constraints.txt" in message
    assert not (tmp_path / "run").exists(), "it started before failing"


def load_recipe_model_from_run(run_dir: Path) -> SentenceTransformer:
    """The model as the recipe held it at the end of training: the base encoder plus the saved adapter weights,
    loaded through PEFT directly rather than through the saved folder."""
    from peft import PeftModel

    config = json.loads((run_dir / "final" / "adapter_config.json").read_text())
    model = SentenceTransformer(config["base_model_name_or_path"])
    transformer = model[0].auto_model
    model[0].auto_model = PeftModel.from_pretrained(transformer, str(run_dir / "final")).merge_and_unload()
    return model


def test_push_to_hub_uploads_the_final_model_folder_alone(tiny_encoder_dir, tmp_path, monkeypatch, fake_hub):
    """The push, offline: the Hub calls are replaced by a copy of the uploaded folder into a Hub cache, from which
    ``PairHead.from_pretrained(repo id)`` then loads the head exactly as the recipe trained it."""
    import huggingface_hub

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: "hf_test_token")
    monkeypatch.setattr(huggingface_hub.HfApi, "whoami", lambda self, token=None: {"name": "someone"})
    created, uploaded = [], []

    def create_repo(self, repo_id, **options):
        created.append((repo_id, options))
        return SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, *, repo_id, folder_path, **options):
        uploaded.append((repo_id, Path(folder_path), options))
        fake_hub.publish(repo_id, Path(folder_path))

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    program = train_program()
    live_heads = []

    def keep_the_live_head(trainer, loss, *rest, **options):
        live_heads.append(copy.deepcopy(find_pair_head(loss)).cpu())
        return finish_run(trainer, loss, *rest, **options)

    monkeypatch.setattr(program, "finish_run", keep_the_live_head)
    output_dir = tmp_path / "alc-run"
    checkpointing = ["--save_strategy", "steps", "--save_steps", "2", "--save_total_limit", "5"]
    program.main(
        ["--model_name_or_path", str(tiny_encoder_dir), "--output_dir", str(output_dir), *SMALL_RUN, *checkpointing]
        + ["--push_to_hub", "true", "--hub_private_repo", "true"]
    )

    # One repository (named after output_dir, in the user's namespace), one upload: the final model folder.
    assert created == [("someone/alc-run", {"private": True, "exist_ok": True, "repo_type": "model"})]
    assert [(repo_id, folder) for repo_id, folder, _ in uploaded] == [("someone/alc-run", output_dir / "final")]
    assert sorted(p.name for p in output_dir.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    hub = fake_hub.root / "models--someone--alc-run" / "snapshots"
    (repo,) = hub.iterdir()
    published = sorted(str(path.relative_to(repo)) for path in repo.rglob("*") if path.is_file())
    assert not [path for path in published if "checkpoint-" in path or path.startswith("final")], published
    # No nested copy of the model: the only weights are the encoder's and the head's.
    assert [path for path in published if path.endswith(".safetensors")] == [
        "model.safetensors",
        "pair_head/model.safetensors",
    ]
    for name in ("coverage_before", "coverage_after", "coverage_after_pair_head"):
        assert json.loads((repo / f"{name}.json").read_text())["splits"]["test"]["num_queries"] == 900
        assert (repo / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    card = (repo / "README.md").read_text()
    assert re.search(r"\| \*\*c@1_p90\*\* +\| \*\*[\d.]+\*\* +\| \*\*[\d.]+\*\*", card), "coverage before/after"
    assert "PairHead.from_pretrained" in card

    # The head comes back from the Hub id, and from the folder, with the outputs of the head the loss trained.
    torch.manual_seed(0)
    queries, labels = torch.randn(6, 32), torch.randn(6, 32)
    expected = live_heads[0](queries, labels)
    from_hub = PairHead.from_pretrained("someone/alc-run", cache_dir=fake_hub.root, local_files_only=True)
    assert torch.equal(from_hub(queries, labels), expected)
    assert torch.equal(PairHead.from_pretrained(repo)(queries, labels), expected)
    assert SentenceTransformer(str(repo)).encode(["sony wh-1000xm5"]).shape == (1, 32)


def test_push_to_hub_without_network_fails_before_training(tiny_encoder_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    (tmp_path / "keep.txt").write_text("earlier results")
    with pytest.raises(HubUnavailableError, match="HF_HUB_OFFLINE=1 is set"):
        run_recipe(tiny_encoder_dir, tmp_path, "--push_to_hub", "true", "--hub_model_id", "someone/alc-model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"], "it started before failing"


def test_push_to_hub_without_a_token_fails_before_training(tiny_encoder_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    with pytest.raises(HubUnavailableError, match="needs a Hugging Face token"):
        run_recipe(tiny_encoder_dir, tmp_path, "--push_to_hub", "true")
    assert not (tmp_path / "final").exists()


def test_recipe_reports_a_model_it_cannot_load(tmp_path):
    command = [
        sys.executable,
        str(RECIPE),
        "--model_name_or_path",
        "nobody/no-such-model",
        "--output_dir",
        str(tmp_path),
    ]
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    assert completed.returncode != 0
    assert "cannot load the encoder 'nobody/no-such-model'" in completed.stderr


def test_hardness_weighted_mnrl_is_a_recipe_backbone(tiny_model):
    from alc_hf.losses.base import loss_chain

    arguments = train_program().ARGUMENTS
    options = ["--output_dir", "x", "--base_loss", "mnrl", "--hardness_mode", "hard_negatives"]
    _, _, _, loss_args, *_ = parse_recipe_arguments(arguments, [*options, "--hardness_strength", "5", "--alc", "false"])
    backbone = list(loss_chain(build_loss(tiny_model, **dataclasses.asdict(loss_args))))[-1]
    assert isinstance(backbone, MultipleNegativesRankingLoss)
    assert (backbone.hardness_mode, backbone.hardness_strength) == ("hard_negatives", 5.0)
    with pytest.raises(ValueError, match="hardness_mode 'hard_negatives' weights MultipleNegativesRankingLoss's"):
        parse_recipe_arguments(arguments, ["--output_dir", "x", "--hardness_mode", "hard_negatives"])
    with pytest.raises(ValueError, match="hardness_mode"):
        parse_recipe_arguments(arguments, [*options[:-1], "hardest"])


def test_loss_defaults_are_the_loss_classes_own():
    """The defaults chosen by the valid-split ablation live in ALCLoss / TCMLoss; the recipe and build_loss repeat
    them (HfArgumentParser needs literal defaults), so they must agree."""
    own = {}
    for loss_class in (ALCLoss, TCMLoss):
        for name, parameter in inspect.signature(loss_class.__init__).parameters.items():
            if parameter.default is not inspect.Parameter.empty and name != "gather_across_devices":
                own[name] = parameter.default
    recipe = {field.name: field.default for field in dataclasses.fields(LossArguments)}
    built = {name: p.default for name, p in inspect.signature(build_loss).parameters.items()}
    for name in (
        "ql_weight",
        "qb_weight",
        "num_negatives",
        "pair_head_hidden_dim",
        "head_warmup_steps",
        "pos_margin",
        "neg_margin",
    ):
        assert recipe[name] == own[name], name
        assert built[name] == own[name], name
    assert recipe["base_loss"] == built["base_loss"] == "softmax"


def test_train_verifier_saves_the_pair_and_compares_accept_scores(tiny_encoder_dir, tmp_path, capsys):
    from alc_hf.cli import main as cli_main
    from alc_hf.models.verifier import load_verifier
    from tests.tiny_model import build_tiny_encoder_files

    cross = build_tiny_encoder_files(tmp_path / "cross_start", initializer_range=0.3)
    run_recipe(
        tiny_encoder_dir,
        tmp_path / "run",
        "--evaluate_before_training", "false",
        "--train_verifier", "true",
        "--verifier_model", str(cross),
        "--verifier_epochs", "2",
        "--verifier_select_on_calibration", "true",
        "--verifier_num_mined", "1",
        "--verifier_max_train_samples", "60",
        "--verifier_max_length", "32",
        "--rerank_depth", "3",
    )  # fmt: skip
    printed = capsys.readouterr().out
    final = tmp_path / "run" / "final"
    verifier = load_verifier(final / "verifier")
    assert verifier.num_labels == 1
    # Chosen on the calibration split's pairs: each epoch's F1 recorded, the checkpoints gone from the model folder.
    selection = json.loads((final / "verifier" / "verifier_selection.json").read_text())
    assert len(selection["f1_per_epoch"]) == 2 and selection["selection_pairs"] > 0
    assert not list((final / "verifier").glob("checkpoint-*"))
    for accept_score in ("cosine", "pair_head", "combined", "verifier", "verifier_rerank", "verifier_combined"):
        assert re.search(rf"^{accept_score}\s+[\d.]+", printed, re.MULTILINE), accept_score
    assert (tmp_path / "run" / "final" / "coverage_after_verifier_rerank.json").is_file()
    card = (final / "README.md").read_text()
    assert "## Accept decision" in card and "`verifier/`" in card and "`pair_head/`" in card
    assert re.search(r"\| \*\*c@1_p90\*\* .*\|.*\|.*\|.*\|", card), "the card's table must hold every accept score"

    # The saved pair is evaluated again, the verifier found beside the model; a wrong --verifier stops at once.
    assert (
        cli_main(
            ["evaluate", str(final), "--output_dir", str(tmp_path / "again"), "--per_device_eval_batch_size", "256"]
        )
        == 0
    )
    assert "verifier_rerank" in capsys.readouterr().out
    assert cli_main(["evaluate", str(final), "--verifier", str(final), "--output_dir", str(tmp_path / "x")]) == 2
    assert "holds no verifier" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_verifier_that_cannot_load_stops_the_recipe_before_any_work(tiny_encoder_dir, tmp_path):
    from alc_hf.models import ModelLoadError

    with pytest.raises((ModelLoadError, OSError, ValueError)):
        run_recipe(tiny_encoder_dir, tmp_path / "run", "--train_verifier", "true", "--verifier_model", str(tmp_path))
    assert not (tmp_path / "run").exists(), "it started before failing"
    with pytest.raises(ValueError, match="--verifier_max_train_samples 0: expected a value >= 1"):
        run_recipe(tiny_encoder_dir, tmp_path / "run", "--train_verifier", "true", "--verifier_max_train_samples", "0")
    assert not (tmp_path / "run").exists(), "it started before failing"


@pytest.mark.parametrize("target", ["demo", "demo-verifier"])
def test_every_demo_option_is_a_recipe_option(target):
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    recipe = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe, f"no `{target}` target in the Makefile"
    lines = recipe.group(1).replace("\\\n", " ").splitlines()  # one command a line, continuations joined
    command = next(line for line in lines if "recipes/train_alc.py" in line).split()
    argv = command[command.index("recipes/train_alc.py") + 1 :]
    *_, verifier_args, args = parse_recipe_arguments(train_program().ARGUMENTS, argv)
    assert args.output_dir == f"outputs/{target.replace('-', '_')}"
    assert verifier_args.train_verifier == (target == "demo-verifier")
