"""`slm ingest dataset.path=s3://...` end to end over real HTTP against moto's S3 server, as with MinIO."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from components.core.fileio import read_jsonl

from helpers import ROOT as REPO
SECRET = "s3cr3t-never-printed-7f3a"


@pytest.fixture(scope="module")
def s3_env():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    env = {**os.environ, "AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "test-key",
           "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1"}
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="test-key",
                          aws_secret_access_key=SECRET, region_name="us-east-1")
    client.create_bucket(Bucket="datasets")
    client.upload_file(str(REPO / "tests/fixtures/nq_open.jsonl"), "datasets", "NQ-open.dev.jsonl")
    yield env
    server.stop()


def _slm_ingest(env: dict, path: str, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", "ingest", "--no-clearml", f"dataset.path={path}",
                           f"experiment.output_dir={out}"], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_ingest_from_s3_matches_local_file(s3_env, tmp_path):
    result = _slm_ingest(s3_env, "s3://datasets/NQ-open.dev.jsonl", tmp_path / "s3")
    assert result.returncode == 0, result.stderr
    local = _slm_ingest(s3_env, str(REPO / "tests/fixtures/nq_open.jsonl"), tmp_path / "local")
    assert local.returncode == 0, local.stderr
    from_s3 = read_jsonl(tmp_path / "s3/ingest/questions.jsonl")
    assert from_s3 and from_s3 == read_jsonl(tmp_path / "local/ingest/questions.jsonl")
    assert SECRET not in result.stdout + result.stderr


def test_missing_s3_key_is_one_line_error(s3_env, tmp_path):
    result = _slm_ingest(s3_env, "s3://datasets/missing.jsonl", tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "missing.jsonl" in errors[0] and "datasets" in errors[0]
    assert "Traceback" not in result.stderr and SECRET not in result.stderr
    assert not (tmp_path / "ingest" / "manifest.json").exists()
