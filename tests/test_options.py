"""Every option is declared once: the options ``alc-hf evaluate`` and ``alc-hf certify`` share with the train program
come from the same dataclasses, with one name, one default and one help; every option has help; and the package
built as a wheel, without the clone, trains with ``alc-hf train``."""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from sentence_transformers import SentenceTransformerTrainingArguments

from alc_hf.cli import _command_parser
from alc_hf.training.config import recipe_parser
from alc_hf.training.train import ARGUMENTS
from tests.test_recipe import SMALL_RUN

REPO_ROOT = Path(__file__).resolve().parent.parent
# Options the train program takes from transformers' TrainingArguments keep transformers' declaration there.
TRANSFORMERS_OPTIONS = {option.name for option in dataclasses.fields(SentenceTransformerTrainingArguments)}


def declarations(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {action.dest: action for action in parser._actions if action.option_strings and action.dest != "help"}


@pytest.mark.parametrize("command", ["evaluate", "certify"])
def test_an_option_shared_with_the_train_program_has_one_name_default_and_help(command):
    train, cli = declarations(recipe_parser(ARGUMENTS)), declarations(_command_parser(command))
    shared = (set(train) & set(cli)) - TRANSFORMERS_OPTIONS
    expected = {
        "data",
        "data_dir",
        "text_fields",
        "query_column",
        "label_column",
        "query_id_column",
        "label_id_column",
        "relevance_column",
        "catalog_seed",
        "evaluation_view",
        "rerank_depth",
        "delta",
    }
    if command == "evaluate":
        expected |= {"target_precisions", "calibration_method"}
    assert shared == expected
    for name in shared:
        assert (cli[name].default, cli[name].help, cli[name].option_strings) == (
            train[name].default,
            train[name].help,
            train[name].option_strings,
        ), name
    # The names the command line used to give some of them are gone.
    assert not {"view", "seed", "batch_size"} & set(cli)


@pytest.mark.parametrize("parser", ["train", "evaluate", "certify", "match"])
def test_every_option_has_help(parser):
    options = declarations(recipe_parser(ARGUMENTS) if parser == "train" else _command_parser(parser))
    missing = sorted(name for name, action in options.items() if not (action.help or "").strip())
    assert not missing, f"alc-hf {parser}: options without help: {missing}"


def test_the_wheel_alone_trains_with_alc_hf_train(tiny_encoder_dir, tmp_path):
    """Built as a wheel and installed without the clone (no recipes/, no tests/), ``alc-hf train`` trains."""
    dist, site, elsewhere = tmp_path / "dist", tmp_path / "site", tmp_path / "elsewhere"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(REPO_ROOT)], check=True)
    (wheel,) = dist.glob("alc_hf-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(name).decode() for name in names if name.endswith("entry_points.txt"))
    assert "alc_hf/training/train.py" in names and "alc_hf/core/coverage_metric/README.md" in names
    assert "alc-hf = alc_hf.cli:main" in entry_points
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)

    elsewhere.mkdir()
    argv = ["train", "--model_name_or_path", str(tiny_encoder_dir), "--output_dir", "run", *SMALL_RUN]
    argv += ["--max_steps", "2", "--evaluate_before_training", "false"]
    code = (
        "import sys, alc_hf\n"
        f"assert alc_hf.__file__.startswith({str(site)!r}), alc_hf.__file__\n"
        "from alc_hf.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    environment = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=elsewhere, env=environment, capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Trained 2 steps." in completed.stdout
    assert (elsewhere / "run" / "final" / "model.safetensors").is_file()
