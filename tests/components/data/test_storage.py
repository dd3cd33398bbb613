"""S3 round trips over real HTTP against moto's S3 server on 127.0.0.1 (no MinIO binary needed)."""
from __future__ import annotations

import logging
import socket
import time
import traceback
import uuid
from pathlib import Path

import boto3
import pytest

from components.core.errors import UserError
from components.data.storage import download_s3, list_s3, parse_s3_uri, upload_s3

SECRET = "s3cr3t-Do-Not-Leak-9f2c"
ACCESS_KEY = "test-access-key"


def _isolate_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS or ClearML config from the developer's machine may leak into a test."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("CLEARML_CONFIG_FILE", str(tmp_path / "no-clearml.conf"))


@pytest.fixture
def aws_env(s3_server, monkeypatch, tmp_path) -> str:
    """AWS-form setup: endpoint and keys in the standard environment. Returns the endpoint URL."""
    _isolate_aws_env(monkeypatch, tmp_path)
    endpoint = f"http://{s3_server}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    return endpoint


def _make_bucket(s3_server: str) -> str:
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=f"http://{s3_server}", region_name="us-east-1",
                          aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET)
    client.create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture
def bucket(s3_server, aws_env) -> str:
    return _make_bucket(s3_server)


def _free_closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_parse_both_uri_kinds():
    aws = parse_s3_uri("s3://datasets/nq/dev.jsonl")
    assert (aws.endpoint, aws.bucket, aws.key) == (None, "datasets", "nq/dev.jsonl")
    clearml = parse_s3_uri("s3://minio:9000/clearml/proj/task/a.json")
    assert (clearml.endpoint, clearml.bucket, clearml.key) == ("minio:9000", "clearml", "proj/task/a.json")
    assert parse_s3_uri("s3://minio:9000/clearml").key == ""
    for bad in ("http://x/y", "s3://", "s3://minio:9000/"):
        with pytest.raises(UserError):
            parse_s3_uri(bad)


def test_file_round_trip_aws_form(bucket, tmp_path):
    src = tmp_path / "dev.jsonl"
    src.write_text('{"question": "q", "answers": ["a"]}\n')
    assert upload_s3(src, f"s3://{bucket}/nq/") == f"s3://{bucket}/nq/dev.jsonl"
    assert list_s3(f"s3://{bucket}/nq/") == [("nq/dev.jsonl", src.stat().st_size)]
    local = download_s3(f"s3://{bucket}/nq/dev.jsonl", tmp_path / "down")
    assert local == tmp_path / "down" / "dev.jsonl"
    assert local.read_text() == src.read_text()
    assert [p.name for p in local.parent.iterdir()] == ["dev.jsonl"]  # no temporary file left behind


def test_folder_round_trip_clearml_form(bucket, s3_server, tmp_path):
    src = tmp_path / "index"
    (src / "sub").mkdir(parents=True)
    (src / "meta.json").write_text("{}")
    (src / "sub" / "vectors.bin").write_bytes(b"\x00" * 1000)
    uri = f"s3://{s3_server}/{bucket}/runs/index"
    assert upload_s3(src, uri) == uri + "/"
    assert list_s3(uri) == [("runs/index/meta.json", 2), ("runs/index/sub/vectors.bin", 1000)]
    folder = download_s3(uri + "/", tmp_path / "down")
    assert folder == tmp_path / "down" / "index"
    assert (folder / "sub" / "vectors.bin").read_bytes() == b"\x00" * 1000
    assert (folder / "meta.json").read_text() == "{}"


def test_clearml_form_endpoint_beats_aws_endpoint_url(bucket, s3_server, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_closed_port()}")
    src = tmp_path / "a.txt"
    src.write_text("x")
    assert upload_s3(src, f"s3://{s3_server}/{bucket}/a.txt") == f"s3://{s3_server}/{bucket}/a.txt"


def test_missing_key_names_key_bucket_and_endpoint(bucket, aws_env, tmp_path):
    with pytest.raises(UserError) as e:
        download_s3(f"s3://{bucket}/nq/missing.jsonl", tmp_path)
    message = str(e.value)
    assert "'nq/missing.jsonl'" in message and bucket in message and aws_env in message
    assert "\n" not in message
    assert not list(tmp_path.iterdir())


def test_missing_bucket_names_bucket_and_endpoint(aws_env, s3_server, tmp_path):
    for uri in ("s3://no-such-bucket-here/k", f"s3://{s3_server}/no-such-bucket-here/k"):
        calls = [(download_s3, (uri, tmp_path)), (list_s3, (uri,)), (upload_s3, (Path(__file__), uri))]
        for func, args in calls:
            with pytest.raises(UserError) as e:
                func(*args)
            assert "bucket 'no-such-bucket-here' not found" in str(e.value)
            assert aws_env in str(e.value)


def test_host_without_port_gets_a_hint(aws_env, bucket, tmp_path):
    with pytest.raises(UserError, match="needs its port"):
        list_s3(f"s3://127.0.0.1/{bucket}/x")


def test_key_with_dotdot_cannot_escape(bucket, aws_env, tmp_path):
    client = boto3.client("s3", endpoint_url=aws_env, region_name="us-east-1")
    client.put_object(Bucket=bucket, Key="../../etc/evil.txt", Body=b"single")
    client.put_object(Bucket=bucket, Key="pre/../../../escape.txt", Body=b"nested")
    dest = tmp_path / "a" / "b" / "dest"

    single = download_s3(f"s3://{bucket}/../../etc/evil.txt", dest)
    assert single == dest / "evil.txt" and single.read_bytes() == b"single"

    folder = download_s3(f"s3://{bucket}/pre/", dest)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all(p.resolve().is_relative_to(dest.resolve()) for p in written), written
    assert (folder / "escape.txt").read_bytes() == b"nested"


def test_unreachable_endpoint_fails_fast(aws_env, monkeypatch, tmp_path):
    endpoint = f"http://127.0.0.1:{_free_closed_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    start = time.monotonic()
    with pytest.raises(UserError) as e:
        download_s3("s3://datasets/nq.jsonl", tmp_path)
    assert time.monotonic() - start < 10
    assert str(e.value).startswith(f"S3 endpoint {endpoint}: unreachable (")


def test_credentials_from_clearml_conf(s3_server, monkeypatch, tmp_path):
    _isolate_aws_env(monkeypatch, tmp_path)
    bucket = _make_bucket(s3_server)
    conf = tmp_path / "clearml.conf"
    conf.write_text(
        'sdk { aws { s3 { key: "", secret: "", credentials: [\n'
        f'  {{ host: "{s3_server}", key: "{ACCESS_KEY}", secret: "{SECRET}", secure: false, multipart: true }}\n'
        "] } } }\n")
    src = tmp_path / "a.txt"
    src.write_text("from conf")

    with pytest.raises(UserError, match="no S3 credentials"):  # nothing in env and no conf yet
        upload_s3(src, f"s3://{s3_server}/{bucket}/a.txt")

    monkeypatch.setenv("CLEARML_CONFIG_FILE", str(conf))
    upload_s3(src, f"s3://{s3_server}/{bucket}/a.txt")  # ClearML form: the entry whose host matches
    # AWS form without AWS_ENDPOINT_URL: the endpoint is the conf's MinIO host too
    assert download_s3(f"s3://{bucket}/a.txt", tmp_path / "down").read_text() == "from conf"


def test_bad_clearml_conf_is_one_line_without_its_text(s3_server, monkeypatch, tmp_path):
    _isolate_aws_env(monkeypatch, tmp_path)
    conf = tmp_path / "clearml.conf"
    conf.write_text(f'sdk {{ aws {{ s3 {{ secret: "{SECRET}" }}\n')
    monkeypatch.setenv("CLEARML_CONFIG_FILE", str(conf))
    with pytest.raises(UserError) as e:
        list_s3("s3://datasets/x")
    assert str(conf) in str(e.value) and SECRET not in str(e.value)


def test_secret_never_in_errors_or_logs(bucket, aws_env, s3_server, monkeypatch, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    dead = f"http://127.0.0.1:{_free_closed_port()}"
    failures = [
        lambda: download_s3(f"s3://{bucket}/missing", tmp_path),
        lambda: list_s3("s3://no-such-bucket-here/x"),
        lambda: upload_s3(tmp_path / "missing-file", f"s3://{bucket}/x"),
        lambda: list_s3(f"s3://{dead.removeprefix('http://')}/{bucket}/x"),
    ]
    for failure in failures:
        with pytest.raises(UserError) as e:
            failure()
        rendered = "".join(traceback.format_exception(e.value)) + repr(e.value)
        assert SECRET not in rendered
    assert all(SECRET not in record.getMessage() for record in caplog.records)
