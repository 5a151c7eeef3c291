"""What a new user's bad input gets from the two programs, ``recipes/train_alc.py`` and ``alc-hf``: one located
``error:`` line, exit status 2 and no output folder; the checks of option values before any work; and the output
folder that never mixes two runs."""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from alc_hf.cli import main as cli_main
from alc_hf.core.program import run_program
from alc_hf.training import run as run_module
from alc_hf.training.config import parse_recipe_arguments
from alc_hf.training.output_dir import check_output_dir, publish_model_dir, remove_files, set_aside_earlier_run
from tests.test_recipe import RECIPE, SMALL_RUN, train_program

ENVIRONMENT = {**os.environ, "HF_HUB_OFFLINE": "1"}


def recipe_status(tiny_encoder_dir: Path, output_dir: Path, *options: str) -> int:
    """The recipe's exit status, run as its ``__main__`` runs it (errors reported, not raised)."""
    recipe = train_program()
    argv = ["--model_name_or_path", str(tiny_encoder_dir), "--output_dir", str(output_dir), *SMALL_RUN, *options]
    return run_program(lambda: recipe.main(argv), "train_alc.py")


def one_error_line(stderr: str, program: str) -> str:
    """The message of the one ``error:`` line of ``stderr``, which holds no traceback."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith(f"{program}: error: ")]
    assert len(errors) == 1, stderr
    return errors[0][len(f"{program}: error: ") :]


# ------------------------------------------------------------------------------------- bad data, every format

PAIRS_OK = "q,l\nred shoe,shoe A\nblue boot,boot B\n"
TABLE_A = "id,brand,title\na1,sony,wh1000xm5 black\na2,apple,iphone 15\n"
TABLE_B = "id,brand,title\nb1,sony,wh-1000xm5 headphones\nb2,apple,iphone 15 128gb\n"
PAIRS_TABLE = "ltable_id,rtable_id,label\na1,b1,1\na2,b2,1\n"
BEIR_CORPUS = '{"_id": "d1", "title": "sony", "text": "wh-1000xm5"}\n{"_id": "d2", "title": "", "text": "iphone"}\n'
BEIR_QUERIES = '{"_id": "q1", "text": "sony headphones"}\n{"_id": "q2", "text": "apple phone"}\n'
BEIR_QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n"


def pairs_folder(folder: Path, train: str | bytes, name: str = "train.csv") -> list[str]:
    for split, content in (("train", train), ("valid", PAIRS_OK), ("test", PAIRS_OK)):
        data = content if isinstance(content, bytes) else content.encode()
        (folder / (name if split == "train" else f"{split}.csv")).write_bytes(data)
    return ["--data", "pairs", "--query_column", "q", "--label_column", "l"]


def tables_folder(folder: Path, table_a: str, test: str | bytes = PAIRS_TABLE) -> list[str]:
    """A product-table folder; ``test`` is the test split's pairs (the split both programs read)."""
    for name, content in (("tableA.csv", table_a), ("tableB.csv", TABLE_B), ("test.csv", test)):
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    for split in ("train", "valid"):
        (folder / f"{split}.csv").write_text(PAIRS_TABLE)
    return ["--data", "tables", "--text_fields", "brand", "title"]


def beir_folder(folder: Path, test_qrels: str, corpus: bytes = BEIR_CORPUS.encode()) -> list[str]:
    (folder / "qrels").mkdir()
    (folder / "corpus.jsonl").write_bytes(corpus)
    (folder / "queries.jsonl").write_text(BEIR_QUERIES)
    for split in ("train", "dev", "test"):
        (folder / "qrels" / f"{split}.tsv").write_text(test_qrels if split == "test" else BEIR_QRELS)
    return ["--data", "beir"]


# (what is wrong, how the folder is written, the located message): the unquoted comma and bad byte in
# each format that can hold them.
BAD_DATA = [
    (
        "pairs CSV: an unquoted comma",
        lambda folder: pairs_folder(folder, PAIRS_OK + "sony wh1000xm5, black,corsair 115gb kit\n"),
        r"train\.csv:4: row 3 has 3 fields, expected 2 as in the header \(an unquoted comma",
    ),
    (
        "pairs CSV: a byte that is not UTF-8",
        lambda folder: pairs_folder(folder, PAIRS_OK.encode() + b"caf\xe9 cup,cup C\n"),
        r"train\.csv:4: not valid UTF-8 at column 4 \(byte 0xe9",
    ),
    (
        "pairs JSON lines: a byte that is not UTF-8",
        lambda folder: pairs_folder(
            folder, b'{"q": "red shoe", "l": "shoe A"}\n{"q": "caf\xe9", "l": "cup"}\n', "train.jsonl"
        ),
        r"train\.jsonl:2: not valid UTF-8 at column 11 \(byte 0xe9",
    ),
    (
        "product tables: an unquoted comma in tableA",
        lambda folder: tables_folder(folder, TABLE_A + "a3,bose,qc45, white\n"),
        r"tableA\.csv:4: row 3 has 4 fields, expected 3 as in the header",
    ),
    (
        "product tables: a byte that is not UTF-8 in the pairs",
        lambda folder: tables_folder(folder, TABLE_A, PAIRS_TABLE.encode() + b"a1,b2,\xff\n"),
        r"test\.csv:4: not valid UTF-8 at column 7 \(byte 0xff",
    ),
    (
        "BEIR: an extra field in the qrels",
        lambda folder: beir_folder(folder, BEIR_QRELS + "q1\td2\t0\textra\n"),
        r"test\.tsv:4: row 3 has 4 fields, expected 3 as in the header \(an unquoted tab",
    ),
    (
        "BEIR: a JSON line cut short",  # located where it ends, not at column 1 of the next line
        lambda folder: beir_folder(folder, BEIR_QRELS, BEIR_CORPUS.encode() + b'{"_id": "d3", "text":\n'),
        r"corpus\.jsonl:3: malformed JSON at column 22: Expecting value \(the line ends before the JSON object does",
    ),
    (
        "product tables: a header-only split",
        lambda folder: tables_folder(folder, TABLE_A, "ltable_id,rtable_id,label\n"),
        r"data/test\.csv: no rows after the header \(split 'test' is empty\)",
    ),
    (
        "BEIR: a byte that is not UTF-8 in the corpus",
        lambda folder: beir_folder(folder, BEIR_QRELS, BEIR_CORPUS.encode() + b'{"_id": "d3", "text": "\xe9"}\n'),
        r"corpus\.jsonl:3: not valid UTF-8 at column 24 \(byte 0xe9",
    ),
]


@pytest.mark.parametrize(("case", "write", "message"), BAD_DATA, ids=[case for case, _, _ in BAD_DATA])
def test_bad_data_stops_both_programs_with_one_located_line_and_no_output(
    tiny_encoder_dir, tmp_path, capsys, case, write, message
):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data = [*write(data_dir), "--data_dir", str(data_dir)]

    assert recipe_status(tiny_encoder_dir, tmp_path / "run", *data) == 2
    assert re.search(message, one_error_line(capsys.readouterr().err, "train_alc.py"))
    assert not (tmp_path / "run").exists(), "the recipe wrote into its output_dir before failing"

    assert cli_main(["evaluate", str(tiny_encoder_dir), *data, "--output_dir", str(tmp_path / "evaluation")]) == 2
    assert re.search(message, one_error_line(capsys.readouterr().err, "alc-hf evaluate"))
    assert not (tmp_path / "evaluation").exists()


# ------------------------------------------------------------------------------------- options, before any work

BAD_OPTIONS = [
    (["--max_steps", "-3"], r"--max_steps -3: expected a value >= 1, or -1 \(no limit"),
    (["--max_steps", "0"], r"--max_steps 0: expected a value >= 1"),
    (["--num_train_epochs", "0"], r"--num_train_epochs 0\.0: expected a value > 0"),
    (["--per_device_train_batch_size", "0"], r"--per_device_train_batch_size 0: expected a value >= 1"),
    (["--per_device_eval_batch_size", "-1"], r"--per_device_eval_batch_size -1: expected a value >= 1"),
    (["--learning_rate=-1e-5"], r"--learning_rate -1e-05: expected a value > 0"),
    (["--pair_head_learning_rate", "0"], r"--pair_head_learning_rate 0\.0: expected a value > 0"),
    (["--warmup_steps", "-0.1"], r"--warmup_steps -0\.1: expected a value >= 0"),
    (["--num_negatives", "0"], r"num_negatives \(k\) must be >= 1, got 0"),
    (["--ql_weight", "-1"], r"ql_weight must be >= 0, got -1\.0"),
    (["--pos_margin", "0.4"], r"neg_margin \(0\.5\) must be below pos_margin \(0\.4\)"),
    (["--neg_margin", "-2"], r"neg_margin must be a cosine similarity in \[-1, 1\], got -2\.0"),
    (["--target_precisions", "0.9", "1.5"], r"--target_precisions 1\.5: expected a value in \(0, 1\]"),
    (["--target_precisions", "0"], r"--target_precisions 0\.0: expected a value in \(0, 1\]"),
    (["--cluster_size", "0"], r"--cluster_size 0: expected a value >= 1"),
    (["--max_train_samples", "0"], r"--max_train_samples 0: expected a value >= 1"),
    (["--lora_dropout", "1"], r"--lora_dropout 1\.0: expected a value in \[0, 1\)"),
    (["--verifier_pos_weight", "heavy"], r"--verifier_pos_weight 'heavy': expected a number > 0 or 'balanced'"),
    (["--verifier_epochs", "0"], r"--verifier_epochs 0\.0: expected a value > 0"),
    (["--rerank_depth", "0"], r"--rerank_depth 0: expected a value >= 1"),
    (
        ["--batching", "clusterd"],
        r"--batching 'clusterd': expected one of random, clustered \(did you mean 'clustered'",
    ),
    (["--calibration_method", "bootstrap"], r"--calibration_method 'bootstrap': expected one of empirical, clopper"),
    (["--lerning_rate", "1e-3"], r"unknown option\(s\): --lerning_rate \(did you mean '--learning_rate'\?\) \(see"),
    # Not taken for the option it abbreviates, as argparse would by default.
    (["--query_colum", "offer"], r"unknown option\(s\): --query_colum \(did you mean '--query_column'\?\)"),
    (["stray"], r"unexpected argument\(s\): stray"),
]


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS, ids=[" ".join(o) for o, _ in BAD_OPTIONS])
def test_a_bad_option_stops_the_recipe_before_any_work(
    tiny_encoder_dir, tmp_path, capsys, monkeypatch, options, message
):
    recipe = train_program()
    monkeypatch.setattr(recipe, "load_encoder", lambda *_: pytest.fail("the model was loaded before the check"))
    argv = ["--model_name_or_path", str(tiny_encoder_dir), "--output_dir", str(tmp_path / "run"), *options]
    assert run_program(lambda: recipe.main(argv), "train_alc.py") == 2
    assert re.search(message, one_error_line(capsys.readouterr().err, "train_alc.py"))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--per_device_eval_batch_size", "0"], r"--per_device_eval_batch_size 0: expected a value >= 1"),
        (["--target_precisions", "1.2"], r"--target_precisions 1\.2: expected a value in \(0, 1\]"),
        (["--delta", "1"], r"--delta 1\.0: expected a value in \(0, 1\)"),
        (["--rerank_depth", "0"], r"--rerank_depth 0: expected a value >= 1"),
    ],
)
def test_a_bad_option_stops_alc_hf_before_any_work(tmp_path, capsys, monkeypatch, options, message):
    from alc_hf import models

    monkeypatch.setattr(models, "load_encoder", lambda *_: pytest.fail("the model was loaded before the check"))
    assert cli_main(["evaluate", "--output_dir", str(tmp_path / "evaluation"), *options]) == 2
    assert re.search(message, one_error_line(capsys.readouterr().err, "alc-hf evaluate"))
    assert not (tmp_path / "evaluation").exists()


def test_a_misspelt_alc_hf_option_gets_the_nearest_one(capsys):
    with pytest.raises(SystemExit) as exited:
        cli_main(["evaluate", "--data", "tables", "--txt_fields", "brand", "title"])
    assert exited.value.code == 2
    assert "unknown option(s): --txt_fields (did you mean '--text_fields'?)" in capsys.readouterr().err


def test_no_args_file_beside_the_script_is_read(tmp_path, monkeypatch):
    # HfArgumentParser would read `<script>.args` into the options: a file no user passed must change nothing.
    (tmp_path / "train_alc.args").write_text("--max_steps 7")
    monkeypatch.setattr(sys, "argv", [str(tmp_path / "train_alc.py")])
    *_, args = parse_recipe_arguments(train_program().ARGUMENTS, [])
    assert args.max_steps == -1


def test_the_recipe_defaults_warm_up_without_a_deprecation_warning(caplog):
    with caplog.at_level(logging.WARNING):
        *_, args = parse_recipe_arguments(train_program().ARGUMENTS, [])
    assert args.warmup_steps == 0.1 and args.warmup_ratio is None
    assert not [record for record in caplog.records if "deprecated" in record.getMessage()]


@pytest.mark.parametrize(
    ("command", "program"),
    [
        ([sys.executable, str(RECIPE), "--max_steps", "-3"], "train_alc.py"),
        ([str(Path(sys.executable).with_name("alc-hf")), "evaluate", "--data", "tables"], "alc-hf evaluate"),
    ],
)
def test_the_programs_end_a_user_error_with_one_line_and_status_2(tmp_path, command, program):
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, env=ENVIRONMENT, cwd=tmp_path)
    assert completed.returncode == 2, completed.stderr
    one_error_line(completed.stderr, program)
    assert not list(tmp_path.iterdir()), "a program wrote output before failing"


def test_the_traceback_is_shown_when_asked_for(monkeypatch, capsys):
    def bad_data() -> None:
        raise FileNotFoundError("file not found: data/train.csv")

    assert run_program(bad_data, "train_alc.py") == 2
    assert capsys.readouterr().err == "train_alc.py: error: file not found: data/train.csv\n"
    with pytest.raises(FileNotFoundError):
        run_program(bad_data, "alc-hf evaluate", debug=True)
    monkeypatch.setenv("ALC_HF_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        run_program(bad_data, "train_alc.py")
    monkeypatch.setenv("ALC_HF_DEBUG", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert run_program(bad_data, "train_alc.py") == 2
    assert capsys.readouterr().err == "[rank 1] train_alc.py: error: file not found: data/train.csv\n"
    # Anything else is a bug: it keeps its traceback.
    with pytest.raises(KeyError):
        run_program(lambda: {}["missing"], "train_alc.py")


# ---------------------------------------------------------------------------------------- the output folder


@pytest.fixture
def umask_022():
    """The usual umask while the test runs (the modes it checks are those it gives), the caller's after it."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def modes(folder: Path) -> set[int]:
    return {stat.S_IMODE(path.stat().st_mode) for path in folder.rglob("*") if path.is_file()}


def test_a_finished_run_is_refused_then_replaced_whole(tiny_encoder_dir, tmp_path, capsys, monkeypatch, umask_022):
    run = tmp_path / "run"
    assert recipe_status(tiny_encoder_dir, run) == 0  # with coverage before training
    printed = capsys.readouterr().out
    # A word before each evaluation, which takes minutes on a CPU with a real model.
    assert re.search(
        r"Measuring coverage before training: 750 calibration and 900 test queries, [\d,]+ labels", printed
    )
    assert "Coverage after training measured in" in printed
    # A tiny model accepts few calibration predictions at 90%: the summary says what that threshold is worth.
    assert "NOTE (cosine): C@1 at 0.900: " in printed
    final = run / "final"
    first_model = (final / "model.safetensors").read_bytes()
    assert (final / "coverage_before.json").is_file()
    assert modes(final) == {0o644}, "files of the published folder are not all readable like the model's"
    assert json.loads((final / "coverage_after.json").read_text())["model"] == str(final)

    # Again into the same folder: refused before any work, the finished run untouched.
    assert recipe_status(tiny_encoder_dir, run) == 2
    message = one_error_line(capsys.readouterr().err, "train_alc.py")
    assert f"--output_dir {run} holds an earlier run (final/, training_log.json, eval/)" in message
    assert "--overwrite_output_dir true" in message
    assert (final / "model.safetensors").read_bytes() == first_model

    # Overwritten by a run that fails while it writes its model folder: the finished model stays whole in final/,
    # the failed one is left in final.partial/, never in final/.
    def failing_reports(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(run_module, "write_reports", failing_reports)
    with pytest.raises(RuntimeError, match="disk full"):
        run_recipe_raising(tiny_encoder_dir, run, "--overwrite_output_dir", "true", "--seed", "7")
    assert (final / "model.safetensors").read_bytes() == first_model
    assert (run / "final.partial" / "model.safetensors").is_file()
    assert (run / "earlier_run" / "eval").is_dir(), "the first run's evaluations were not kept aside"
    monkeypatch.undo()

    # Overwritten by a run without the evaluation before training: nothing of the first run is left in final/.
    new_run = ["--overwrite_output_dir", "true", "--seed", "7", "--evaluate_before_training", "false"]
    assert recipe_status(tiny_encoder_dir, run, *new_run) == 0
    assert not (run / "final.partial").exists()
    assert not list(final.glob("coverage_before*")), "the first run's reports were left beside the new model"
    assert (final / "model.safetensors").read_bytes() != first_model
    assert {path.name for path in run.iterdir()} == {"final", "training_log.json", "eval"}


def run_recipe_raising(tiny_encoder_dir: Path, output_dir: Path, *options: str) -> None:
    train_program().main(
        ["--model_name_or_path", str(tiny_encoder_dir), "--output_dir", str(output_dir), *SMALL_RUN, *options]
    )


def test_set_aside_keeps_the_finished_run_until_the_new_model_is_published(tmp_path):
    run = tmp_path / "run"
    for folder in ("final", "checkpoint-2", "eval"):
        (run / folder).mkdir(parents=True)
    (run / "final" / "model.safetensors").write_bytes(b"finished")
    (run / "checkpoint-2" / "model.safetensors").write_bytes(b"finished, step 2")
    (run / "training_log.json").write_text("[1]")
    (run / "final.partial").mkdir()

    said = set_aside_earlier_run(run, check_output_dir(run, overwrite=True, resume_from_checkpoint=None))
    assert f"its model stays in {run / 'final'}" in said and f"wait in {run / 'earlier_run'}" in said
    assert sorted(path.name for path in run.iterdir()) == ["earlier_run", "final", "training_log.json"]
    assert sorted(path.name for path in (run / "earlier_run").iterdir()) == ["checkpoint-2", "eval"]
    assert (run / "final" / "model.safetensors").read_bytes() == b"finished"

    # That run is killed after writing a checkpoint; the next replacing run drops the killed run's checkpoint and
    # keeps what it had set aside of the finished run.
    (run / "checkpoint-5").mkdir()
    set_aside_earlier_run(run, check_output_dir(run, overwrite=True, resume_from_checkpoint=None))
    assert sorted(path.name for path in run.iterdir()) == ["earlier_run", "final", "training_log.json"]
    assert (run / "earlier_run" / "checkpoint-2" / "model.safetensors").read_bytes() == b"finished, step 2"

    # Only once the new model is published does the finished run go.
    (run / "final.partial").mkdir()
    (run / "final.partial" / "model.safetensors").write_bytes(b"new")
    publish_model_dir(run)
    assert sorted(path.name for path in run.iterdir()) == ["final", "training_log.json"]
    assert (run / "final" / "model.safetensors").read_bytes() == b"new"


def start_recipe(tiny_encoder_dir: Path, output_dir: Path, *options: str) -> subprocess.Popen:
    """The recipe in its own process, its output line by line, for a test to watch and kill."""
    argv = ["--model_name_or_path", str(tiny_encoder_dir), "--output_dir", str(output_dir), *SMALL_RUN, *options]
    return subprocess.Popen(
        [sys.executable, str(RECIPE), *argv, "--max_steps", "100000", "--disable_tqdm", "true"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**ENVIRONMENT, "PYTHONUNBUFFERED": "1"},
    )


def wait_for_line(process: subprocess.Popen, text: str) -> None:
    printed = []
    for line in process.stdout:
        printed.append(line)
        if text in line:
            return
    raise AssertionError(f"the recipe ended without printing {text!r}:\n{''.join(printed)}")


def test_a_killed_overwriting_run_loses_nothing_and_a_second_run_is_refused(tiny_encoder_dir, tmp_path, capsys, caplog):
    from sentence_transformers import SentenceTransformer

    run = tmp_path / "run"
    assert recipe_status(tiny_encoder_dir, run, "--evaluate_before_training", "false") == 0
    final = run / "final"
    first_model, first_log = (final / "model.safetensors").read_bytes(), (run / "training_log.json").read_text()
    capsys.readouterr()

    replacing = start_recipe(
        tiny_encoder_dir, run, "--overwrite_output_dir", "true", "--evaluate_before_training", "false"
    )
    try:
        wait_for_line(replacing, "Replacing the earlier run")
        # A second run into the folder, while the first lives: refused, naming the run that holds it.
        assert recipe_status(tiny_encoder_dir, run, "--overwrite_output_dir", "true") == 2
        message = one_error_line(capsys.readouterr().err, "train_alc.py")
        assert f"--output_dir {run} is in use by another run (pid {replacing.pid} on " in message
    finally:
        replacing.kill()  # SIGKILL: no handler runs, the lock file stays behind
        replacing.wait()
    assert (final / "model.safetensors").read_bytes() == first_model
    assert (run / "training_log.json").read_text() == first_log
    assert SentenceTransformer(str(final), device="cpu").encode(["a title"]).shape == (1, 32)
    assert (run / ".alc_hf.lock").is_file()

    # The next run takes the dead run's lock over, says so, and replaces the model.
    with caplog.at_level(logging.WARNING, logger="alc_hf.training.output_dir"):
        new_run = ["--overwrite_output_dir", "true", "--evaluate_before_training", "false", "--seed", "7"]
        assert recipe_status(tiny_encoder_dir, run, *new_run) == 0
    assert f"taking over the lock of a run that ended without releasing it (pid {replacing.pid}" in caplog.text
    assert (final / "model.safetensors").read_bytes() != first_model
    assert sorted(path.name for path in run.iterdir()) == ["eval", "final", "training_log.json"]


def test_check_output_dir_keeps_checkpoints_to_resume_and_always_clears_a_partial_folder(tmp_path):
    run = tmp_path / "run"
    assert check_output_dir(run, overwrite=False, resume_from_checkpoint=None) == [run / "final.partial"]
    (run / "checkpoint-2").mkdir(parents=True)
    (run / "final.partial").mkdir()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"holds an earlier run \(checkpoint-2/\).*--resume_from_checkpoint last"):
        check_output_dir(run, overwrite=False, resume_from_checkpoint=None)
    resuming = check_output_dir(run, overwrite=False, resume_from_checkpoint=str(run / "checkpoint-2"))
    assert resuming == [run / "final.partial"]
    remove_files(resuming)
    assert sorted(path.name for path in run.iterdir()) == ["checkpoint-2", "notes.txt"]
    (run / "training_log.json").write_text("[]")
    with pytest.raises(FileExistsError, match=r"\(training_log\.json\): pass --overwrite_output_dir true"):
        check_output_dir(run, overwrite=False, resume_from_checkpoint=str(run / "checkpoint-2"))
    remove_files(check_output_dir(run, overwrite=True, resume_from_checkpoint=None))
    assert [path.name for path in run.iterdir()] == ["notes.txt"], "a file no run writes was removed"


def test_publish_model_dir_replaces_final_whole_with_the_umask_modes(tmp_path, umask_022):
    (tmp_path / "final").mkdir()
    (tmp_path / "final" / "stale.json").write_text("{}")
    partial = tmp_path / "final.partial"
    (partial / "pair_head").mkdir(parents=True)
    for path in (partial / "model.safetensors", partial / "pair_head" / "head.safetensors"):
        path.write_bytes(b"weights")
        path.chmod(0o600)  # as safetensors writes them
    final = publish_model_dir(tmp_path)
    assert sorted(str(path.relative_to(final)) for path in final.rglob("*")) == [
        "model.safetensors",
        "pair_head",
        "pair_head/head.safetensors",
    ]
    assert modes(final) == {0o644} and stat.S_IMODE((final / "pair_head").stat().st_mode) == 0o755
    assert sorted(path.name for path in tmp_path.iterdir()) == ["final"]
