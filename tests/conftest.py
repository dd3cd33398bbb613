"""Session-wide test isolation and shared fixtures.

Environment (set in pytest_configure, before any test module is imported, so no ClearML config is read
before it is in place):
- CLEARML_CACHE_DIR -> a session temp dir: offline sessions land there, never in ~/.clearml.
- CLEARML_CONFIG_FILE -> a path that does not exist: no user clearml.conf leaks in, so ClearML runs
  offline (clearml_tasks._tracking then writes its own offline conf and repoints the variable itself).
- CLEARML_API_HOST / CLEARML_OFFLINE_MODE removed.
- OMP_NUM_THREADS=1 unless already set: on this 2-core machine other processes often load the CPU, and
  torch's multi-threaded kernels then spin-wait on descheduled threads (measured: one 2-prompt batch
  took ~50 s with 2 threads under load vs ~2.5 s with 1). Every test and the subprocesses they start see
  the same setting, so runs compared with each other use the same numerics.
SLM_CACHE_DIR is left alone on purpose: the converted demo model is cached under ~/.cache/slm-experiments.

Fixtures here are namespaced (`demo_ingest_dir`, `demo_index_dir`, `shared_data`) and only the env
isolation is autouse.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_SESSION: dict[str, str] = {}
_REMOVED = ("CLEARML_API_HOST", "CLEARML_OFFLINE_MODE")


# What the live-server tests need, saved before the isolation below removes it (tests/e2e/test_clearml_server.py).
SERVER_ENV: dict[str, str] = {}
_SERVER_VARS = ("CLEARML_API_HOST", "CLEARML_WEB_HOST", "CLEARML_FILES_HOST", "CLEARML_API_ACCESS_KEY",
                "CLEARML_API_SECRET_KEY", "CLEARML_CONFIG_FILE")


def pytest_configure(config):
    SERVER_ENV.update({k: os.environ[k] for k in _SERVER_VARS if os.environ.get(k)})
    base = Path(tempfile.mkdtemp(prefix="slm-tests-"))
    _SESSION["base"] = str(base)
    _SESSION["CLEARML_CACHE_DIR"] = str(base / "clearml-cache")
    _SESSION["CLEARML_CONFIG_FILE"] = str(base / "no-such-clearml.conf")  # never created
    os.environ["CLEARML_CACHE_DIR"] = _SESSION["CLEARML_CACHE_DIR"]
    os.environ["CLEARML_CONFIG_FILE"] = _SESSION["CLEARML_CONFIG_FILE"]
    for name in _REMOVED:
        os.environ.pop(name, None)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_unconfigure(config):
    base = _SESSION.get("base")
    if base and not os.environ.get("SLM_KEEP_TEST_TMP"):
        shutil.rmtree(base, ignore_errors=True)


_SDK_PROCESS_VARS = ("CLEARML_PROC_MASTER_ID", "TRAINS_PROC_MASTER_ID", "CLEARML_OFFLINE_MODE",
                     "TRAINS_OFFLINE_MODE")


@pytest.fixture(autouse=True)
def _clearml_env_isolation():
    """Restore the environment after each test. The code under test changes it on its own: resolve_tracking
    repoints CLEARML_CONFIG_FILE (and remembers the user's file), and the ClearML SDK sets
    CLEARML_OFFLINE_MODE / TRAINS_OFFLINE_MODE and CLEARML_PROC_MASTER_ID. Leaked into a later test's
    subprocess, the master id makes that process's Task.init return a stub instead of a task."""
    for name in _SDK_PROCESS_VARS:  # set by a module-scoped fixture's task, before this snapshot
        os.environ.pop(name, None)
    before = dict(os.environ)
    yield
    for name in set(os.environ) - set(before):
        del os.environ[name]
    for name, value in before.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


@pytest.fixture(scope="session")
def clearml_cache_dir() -> Path:
    return Path(_SESSION["CLEARML_CACHE_DIR"])


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """/work/shared/data (the datasets shared between checkouts); skipped where it is absent."""
    path = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} not present")
    return path


@pytest.fixture(scope="session")
def demo_ingest_dir(tmp_path_factory) -> Path:
    """The built-in demo dataset (42 questions, 66 passages), ingested once per session."""
    from components.core.config import DatasetConfig
    from components.stages.ingest import run_ingest

    out = tmp_path_factory.mktemp("demo_ingest")
    run_ingest(DatasetConfig(), out)
    return out


@pytest.fixture(scope="session")
def demo_index_dir(tmp_path_factory, demo_ingest_dir) -> Path:
    """A BM25 index (default retriever config) over the demo passages, built once per session."""
    from components.core.config import RetrieverConfig
    from components.stages.index import run_index

    out = tmp_path_factory.mktemp("demo_index")
    run_index(RetrieverConfig(), demo_ingest_dir, out)
    return out


def pytest_collection_modifyitems(config, items):
    """Everything under tests/e2e/ (the real model, real subprocesses, deployment files) is `slow`."""
    e2e = Path(__file__).resolve().parent / "e2e"
    for item in items:
        if e2e in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def server_env() -> dict[str, str]:
    """The ClearML server settings this session started with, before the isolation removed them."""
    return dict(SERVER_ENV)


@pytest.fixture(scope="module")
def s3_server():
    """moto's S3 server on loopback (MinIO's stand-in): its host:port."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"{host}:{port}"
    server.stop()
