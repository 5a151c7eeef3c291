"""The shape of the package holds: the NumPy-only parts load no deep-learning library, and the ``evaluate`` module
is self-contained. Each import runs in a fresh interpreter, so nothing this test process loaded can hide a leak."""

from __future__ import annotations

import doctest
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import evaluate
import numpy as np
import pytest

from alc_hf.evaluation import COVERAGE_METRIC_PATH
from alc_hf.metrics import threshold_metrics, threshold_results

HEAVY = ("torch", "sentence_transformers", "datasets", "transformers")


def modules_loaded_by(statement: str, roots: tuple[str, ...] = HEAVY, before: str = "") -> list[str]:
    """The top-level packages among ``roots`` that ``statement`` loads in a fresh interpreter (after ``before``)."""
    code = (
        f"import json, sys\n{before}\nearlier = set(sys.modules)\n{statement}\n"
        f"roots = {roots!r}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in set(sys.modules) - earlier} & set(roots))))"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "statement",
    [
        "import alc_hf",
        "import alc_hf.metrics",
        "import alc_hf.retrieval",
        "import alc_hf.command_line",
        "from alc_hf.data import RaggedIds, XMCData, read_xmc, read_product_tables, read_beir, read_pairs",
        "from alc_hf.data import load_evaluation_views, load_query_label_data",
    ],
)
def test_numpy_only_parts_load_no_deep_learning_library(statement):
    assert modules_loaded_by(statement) == []


OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def run_fresh(code: str, tmp_path: Path, **env: str) -> dict:
    """Run ``code`` in a fresh interpreter, offline, with its own modules cache; return the JSON of its last line."""
    environment = {**os.environ, **OFFLINE, "HF_MODULES_CACHE": str(tmp_path / "modules_cache"), **env}
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=environment, cwd=tmp_path
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


# Ties, a query without a prediction (-inf), and an unreachable target (1.0 on test).
INPUTS = {
    "predictions": [0.99, 0.97, 0.97, 0.93, 0.9, 0.85, 0.8, -math.inf],
    "references": [0, 0, 1, 1, 1, 0, 1, 0],
    "calibration_predictions": [0.98, 0.96, 0.96, 0.95, 0.91, 0.9, 0.8, 0.7, 0.6],
    "calibration_references": [1, 1, 1, 1, 1, 0, 1, 1, 0],
    "target_precisions": [0.75, 0.9, 1.0],
}


def compute_in_fresh_process(folder: str, tmp_path: Path, before: str = "", **arguments) -> dict:
    """Load the module from ``folder`` after ``import evaluate`` and compute on :data:`INPUTS`: the figures and the
    packages that loading and computing added (``evaluate`` itself brings torch and datasets)."""
    code = f"""
import json, math, sys
{before}
import evaluate
earlier = set(sys.modules)
module = evaluate.load({folder!r})
result = module.compute(**json.loads({json.dumps({**INPUTS, **arguments})!r}))
added = sorted({{name.split(".")[0] for name in set(sys.modules) - earlier}})
print(json.dumps({{"result": result, "added": added}}))
"""
    return run_fresh(code, tmp_path)


@pytest.mark.parametrize("arguments", [{}, {"method": "clopper_pearson", "delta": 0.2}], ids=["empirical", "cp"])
def test_the_evaluate_module_brings_nothing_but_itself_and_gives_the_package_figures(tmp_path, arguments):
    """Offline, in a fresh interpreter: loading and computing adds no deep-learning library and nothing of alc_hf
    beyond what ``import evaluate`` already loaded, and the figures are ``alc_hf.metrics``'s."""
    ran = compute_in_fresh_process(COVERAGE_METRIC_PATH, tmp_path, **arguments)
    assert not set(ran["added"]) & {*HEAVY, "alc_hf"}, ran["added"]
    expected = threshold_metrics(
        threshold_results(
            INPUTS["calibration_predictions"],
            INPUTS["calibration_references"],
            INPUTS["predictions"],
            INPUTS["references"],
            INPUTS["target_precisions"],
            **arguments,
        ),
        "c@1",
    )
    assert set(ran["result"]) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(ran["result"][name], value, rtol=0, atol=1e-12, err_msg=name)
    assert math.isinf(ran["result"]["c@1_p100_oracle_threshold"])  # the unreachable target went through as inf


def test_a_copy_of_the_folder_loads_and_serves_its_space_without_alc_hf(tmp_path):
    """The folder copied elsewhere, with alc_hf made unimportable: the module loads, computes, and its Space app
    hands the module to the Gradio widget."""
    copy = shutil.copytree(
        COVERAGE_METRIC_PATH, tmp_path / "coverage_metric", ignore=shutil.ignore_patterns("__pycache__")
    )
    assert {"coverage_metric.py", "calibration.py", "README.md", "app.py"} <= {path.name for path in copy.iterdir()}
    block = "sys.modules['alc_hf'] = None  # any import of alc_hf now fails"
    ran = compute_in_fresh_process(str(copy), tmp_path, before=block)
    expected = compute_in_fresh_process(COVERAGE_METRIC_PATH, tmp_path)
    assert ran["result"] == expected["result"]
    code = f"""
import json, runpy, sys
{block}
import evaluate.utils
served = []
evaluate.utils.launch_gradio_widget = lambda module: served.append(module)
runpy.run_path({str(copy / "app.py")!r}, run_name="__main__")
print(json.dumps([type(module).__name__ for module in served]))
"""
    assert run_fresh(code, tmp_path) == ["Coverage"]


CARD = Path(COVERAGE_METRIC_PATH) / "README.md"


def test_the_metric_card_has_the_hub_front_matter_and_sections():
    text = CARD.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    fields = dict(line.split(":", 1) for line in front.splitlines() if line and not line.startswith(("-", " ")))
    assert {"title", "sdk", "app_file", "tags", "description"} <= set(fields)
    assert fields["app_file"].strip() == "app.py"
    assert "- evaluate" in front and "- metric" in front
    headings = [line for line in body.splitlines() if line.startswith("#")]
    for heading in (
        "## Metric Description",
        "## How to Use",
        "### Inputs",
        "### Output Values",
        "### Examples",
        "## Limitations and Bias",
        "## Citation",
    ):
        assert heading in headings, heading
    # Every input of the module is documented with its type.
    for argument in ("predictions", "references", "calibration_predictions", "calibration_references"):
        assert f"- **{argument}** (`list` of" in body, argument
    for argument in ("target_precisions", "method", "delta"):
        assert f"- **{argument}** (`" in body, argument


def test_the_metric_card_examples_print_what_the_module_returns(tmp_path):
    """Run the card's ``>>>`` examples as doctests (the lines that load the module by a placeholder path are
    replaced by the module itself)."""
    parser = doctest.DocTestParser()
    blocks = re.findall(r"```python\n(.*?)```", CARD.read_text(encoding="utf-8"), flags=re.DOTALL)
    examples = [e for block in blocks for e in parser.get_examples(block) if "evaluate.load" not in e.source]
    assert sum(1 for e in examples if e.want) >= 4
    test = doctest.DocTest(
        examples, {"coverage": evaluate.load(COVERAGE_METRIC_PATH), "inf": math.inf}, "README.md", str(CARD), 0, None
    )
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test, out=lambda text: pytest.fail(text))
    assert runner.summarize(verbose=False).attempted == len(examples)


def test_the_package_face_still_serves_the_losses():
    assert modules_loaded_by("from alc_hf import ALCLoss, TCMLoss", roots=("torch",)) == ["torch"]
