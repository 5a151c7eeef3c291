from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import shutil
from pathlib import Path

import pytest
from sentence_transformers import SentenceTransformer

from tests.tiny_model import build_tiny_encoder_files, load_tiny_encoder

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

# The real data beside the project's checkout (../shared/data), never copied into it.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# Set by .ci/run: a test that needs the real data must not pass by skipping.
REQUIRE_SHARED_DATA = "ALC_HF_REQUIRE_SHARED_DATA"
STACK = ("torch", "transformers", "sentence-transformers", "peft", "faiss-cpu", "datasets", "numpy")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "shared_data: needs the real data folder ../shared/data beside the checkout")


def pytest_report_header(config: pytest.Config) -> str:
    """The stack the suite runs on, so that a failure caused by a dependency's release says so."""
    versions = [f"python {platform.python_version()}"]
    versions += [f"{name} {importlib.metadata.version(name)}" for name in STACK]
    return "stack: " + ", ".join(versions)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    needing = [item for item in items if item.get_closest_marker("shared_data")]
    if not needing or SHARED_DATA.is_dir():
        return
    reason = f"needs the real data folder {SHARED_DATA}, which is missing (a clone of the project alone)"
    if os.environ.get(REQUIRE_SHARED_DATA) == "1":
        raise pytest.UsageError(f"{REQUIRE_SHARED_DATA}=1 but {len(needing)} test(s) {reason}")
    for item in needing:
        item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_encoder_files(tmp_path_factory.mktemp("tiny_encoder"))


@pytest.fixture
def tiny_model(tiny_encoder_dir: Path) -> SentenceTransformer:
    """A fresh tiny encoder per test (loading is fast; training one test must not leak into another)."""
    return load_tiny_encoder(tiny_encoder_dir)


class FakeHubCache:
    """A Hugging Face cache folder (``cache_dir``) whose repositories are "published" by copying a folder in as the
    snapshot of ``main``: what reads a Hub id through ``snapshot_download(..., local_files_only=True)`` is tested
    offline, on exactly the files that would have been uploaded."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def publish(self, repo_id: str, folder: Path) -> Path:
        repo = self.root / f"models--{repo_id.replace('/', '--')}"
        commit = hashlib.sha1(repo_id.encode()).hexdigest()
        snapshot = repo / "snapshots" / commit
        shutil.copytree(folder, snapshot)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(commit)
        return snapshot


@pytest.fixture
def fake_hub(tmp_path: Path) -> FakeHubCache:
    return FakeHubCache(tmp_path / "hub_cache")
