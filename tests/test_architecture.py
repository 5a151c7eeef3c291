"""The shape of the package holds: the NumPy-only parts load no deep-learning library, and the ``evaluate`` module
is self-contained. Each import runs in a fresh interpreter, so nothing this test process loaded can hide a leak."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from alc_hf.evaluation import COVERAGE_METRIC_PATH

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
        "from alc_hf.data import RaggedIds, XMCData, read_xmc, read_product_tables, read_beir, read_pairs",
        "from alc_hf.data import load_evaluation_views, load_query_label_data",
    ],
)
def test_numpy_only_parts_load_no_deep_learning_library(statement):
    assert modules_loaded_by(statement) == []


def test_the_evaluate_module_brings_nothing_but_itself():
    """``evaluate`` itself imports torch and datasets; loading the module must add none, nor anything of alc_hf:
    the folder can be copied to the Hub as it is."""
    loaded = modules_loaded_by(
        f"evaluate.load({COVERAGE_METRIC_PATH!r})", roots=(*HEAVY, "alc_hf", "scipy"), before="import evaluate"
    )
    assert set(loaded) <= {"scipy"}, loaded


def test_the_package_face_still_serves_the_losses():
    assert modules_loaded_by("from alc_hf import ALCLoss, TCMLoss", roots=("torch",)) == ["torch"]
