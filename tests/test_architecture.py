"""The shape of the package holds: its folders are layers and every import points down (derived from the folders,
checked on the source), the floor and the data layer load no deep-learning library, ``alc-hf --help`` loads no
torch, and the ``evaluate`` module is self-contained. Each import runs in a fresh interpreter, so nothing this test
process loaded can hide a leak."""

from __future__ import annotations

import ast
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

from alc_hf.core.metrics import threshold_metrics, threshold_results
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


PACKAGE = Path(__file__).resolve().parent.parent / "alc_hf"
# The layers, bottom to top: a module's layer is its folder's (cli.py is the top). The faces at the package root
# (__init__.py, _lazy.py) serve names lazily and belong to no layer.
LAYERS = ("core", "data", "models", "losses", "evaluation", "training", "cli")


def layer_of(module: str) -> int | None:
    """The layer of ``alc_hf.<part>...`` (None for the package's face and ``alc_hf._lazy``)."""
    part = module.split(".")[1] if module.count(".") else ""
    return LAYERS.index(part) if part in LAYERS else None


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def alc_hf_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every alc_hf module ``path`` imports, at the top or inside a function, and of every module
    a package face serves lazily (the keys of its ``lazy_exports`` mapping)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lazy_exports":
            mapping = node.args[1]
            found += [(key.lineno, key.value) for key in mapping.keys if isinstance(key, ast.Constant)]
    return [(line, module) for line, module in found if module == "alc_hf" or module.startswith("alc_hf.")]


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_lives_in_a_layer():
    homeless = [module_name(path) for path in SOURCES if layer_of(module_name(path)) is None]
    assert sorted(homeless) == ["alc_hf", "alc_hf._lazy"], homeless


@pytest.mark.parametrize("path", SOURCES, ids=[module_name(path) for path in SOURCES])
def test_imports_point_down_only(path):
    """A module imports from its own layer or the layers below it; a package face serves its own folder only."""
    module = module_name(path)
    own = layer_of(module)
    if own is None:
        return  # the package's face serves names from every layer, lazily; _lazy imports nothing of alc_hf
    upward = [
        f"line {line}: {imported} ({LAYERS[layer_of(imported)]})"
        for line, imported in alc_hf_imports(path)
        if layer_of(imported) is not None and layer_of(imported) > own
    ]
    assert not upward, f"{module} ({LAYERS[own]}) imports from a layer above it: {upward}"


@pytest.mark.parametrize(
    "statement",
    [
        "import alc_hf",
        # Every module of the floor; of the `evaluate` module's folder its maths (the module itself and its Space
        # app import `evaluate`, which brings torch: they are checked below, against what `evaluate` loads).
        *(
            f"import {module_name(path)}"
            for path in SOURCES
            if module_name(path).startswith("alc_hf.core")
            and module_name(path)
            not in ("alc_hf.core.coverage_metric.coverage_metric", "alc_hf.core.coverage_metric.app")
        ),
        "from alc_hf.data import RaggedIds, QueryLabelData, read_xmc, read_product_tables, read_beir, read_pairs",
        "from alc_hf.data import load_evaluation_views, load_query_label_data",
        "import alc_hf.data.options",
        "import alc_hf.evaluation.options",
    ],
)
def test_numpy_only_parts_load_no_deep_learning_library(statement):
    assert modules_loaded_by(statement) == []


def test_alc_hf_help_loads_no_torch():
    statement = "from alc_hf.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    assert modules_loaded_by(statement) == []


FACES = [path for path in SOURCES if path.name == "__init__.py" and "lazy_exports" in path.read_text()]


@pytest.mark.parametrize("face", FACES, ids=[module_name(path) for path in FACES])
def test_each_lazy_face_names_what_it_serves_for_editors(face):
    """The TYPE_CHECKING block of a lazy package face imports exactly the names it serves, from the same modules,
    so that editors and type checkers find them."""
    tree = ast.parse(face.read_text(encoding="utf-8"))
    served = {
        (key.value, name.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lazy_exports"
        for key, names in zip(node.args[1].keys, node.args[1].values, strict=True)
        for name in names.elts
    }
    checked = {
        (node.module, alias.name)
        for block in tree.body
        if isinstance(block, ast.If) and getattr(block.test, "id", None) == "TYPE_CHECKING"
        for node in ast.walk(block)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    # A name may be imported from the package that re-exports it (``from alc_hf.losses import ALCLoss``).
    assert {name for _, name in checked} == {name for _, name in served}
    assert all(
        module.startswith(served_from) or served_from.startswith(module)
        for (module, name) in checked
        for served_from, served_name in served
        if served_name == name
    )


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
    beyond what ``import evaluate`` already loaded, and the figures are ``alc_hf.core.metrics``'s."""
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
