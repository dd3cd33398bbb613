"""`slm data upload|download|ls|register`: the subcommands, their arguments and what they print; a real
round trip against moto's S3 server on 127.0.0.1."""
from __future__ import annotations

import argparse
import uuid

import boto3
import pytest

from pipelines import data_commands
from pipelines.data_commands import register

ACCESS_KEY, SECRET = "test-access-key", "test-secret-key"


def data_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="slm")
    register(p.add_subparsers(dest="command", required=True))
    return p


@pytest.fixture
def bucket(s3_server, monkeypatch, tmp_path) -> str:
    """A fresh bucket, with endpoint and keys in the AWS environment and nothing else from this machine."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
                        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
                        "AWS_EC2_METADATA_DISABLED": "true", "CLEARML_CONFIG_FILE": str(tmp_path / "no-clearml.conf"),
                        "AWS_ENDPOINT_URL": f"http://{s3_server}", "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                        "AWS_SECRET_ACCESS_KEY": SECRET}.items():
        monkeypatch.setenv(name, value)
    name = f"b-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=f"http://{s3_server}", region_name="us-east-1", aws_access_key_id=ACCESS_KEY,
                 aws_secret_access_key=SECRET).create_bucket(Bucket=name)
    return name


def test_data_commands_upload_ls_download(bucket, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="slm")
    register(parser.add_subparsers(dest="command", required=True))

    def slm(*argv: str) -> int:
        args = parser.parse_args(argv)
        return args.func(args)

    src = tmp_path / "qa.jsonl"
    src.write_text("{}\n")
    assert slm("data", "upload", str(src), f"s3://{bucket}/nq/") == 0
    assert slm("data", "ls", f"s3://{bucket}/") == 0
    assert slm("data", "download", f"s3://{bucket}/nq/qa.jsonl", str(tmp_path / "down")) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"s3://{bucket}/nq/qa.jsonl", f"{3:>12}  nq/qa.jsonl", str(tmp_path / "down" / "qa.jsonl")]
    assert slm("data", "ls", f"s3://{bucket}/nothing-here/") == 0
    assert "no objects under" in capsys.readouterr().err


def test_arguments_and_their_defaults():
    args = data_parser().parse_args(["data", "download", "s3://b/k"])
    assert (args.s3_uri, args.dest, args.func) == ("s3://b/k", ".", data_commands.cmd_download)
    args = data_parser().parse_args(["data", "register", "qa.jsonl", "--name", "nq-open"])
    assert (args.source, args.name, args.project, args.version) == ("qa.jsonl", "nq-open", "slm-experiments/datasets",
                                                                     None)
    assert data_parser().parse_args(["data", "upload", "d", "s3://b/"]).func is data_commands.cmd_upload
    assert data_parser().parse_args(["data", "ls", "s3://b/"]).func is data_commands.cmd_ls


@pytest.mark.parametrize("argv", [["data"], ["data", "register", "qa.jsonl"], ["data", "copy", "a", "b"]])
def test_a_missing_subcommand_or_required_option_is_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        data_parser().parse_args(argv)
    assert exit_.value.code == 2 and "usage:" in capsys.readouterr().err


def test_commands_print_what_storage_returns(monkeypatch, capsys, tmp_path):
    calls = []
    monkeypatch.setattr(data_commands, "upload_s3", lambda local, uri: calls.append(("up", local, uri)) or uri + "x")
    monkeypatch.setattr(data_commands, "download_s3", lambda uri, dest: calls.append(("down", uri, dest)) or dest / "x")
    monkeypatch.setattr(data_commands, "list_s3", lambda uri: [("a/b.jsonl", 12), ("c", 3456789)])

    def slm(*argv: str) -> int:
        args = data_parser().parse_args(argv)
        return args.func(args)

    assert slm("data", "upload", str(tmp_path), "s3://b/p/") == 0
    assert slm("data", "download", "s3://b/p/x") == 0
    assert slm("data", "ls", "s3://b/p/") == 0
    assert calls == [("up", tmp_path, "s3://b/p/"), ("down", "s3://b/p/x", data_commands.Path("."))]
    assert capsys.readouterr().out.splitlines() == ["s3://b/p/x", "x", f"{12:>12}  a/b.jsonl", f"{3456789:>12}  c"]


def test_register_prints_the_dataset_and_how_to_ingest_it(monkeypatch, capsys):
    from clearml_tasks import _datasets

    calls = []
    monkeypatch.setattr(_datasets, "register_dataset", lambda *a: calls.append(a) or "ds-42")
    args = data_parser().parse_args(["data", "register", "s3://b/qa.jsonl", "--name", "nq", "--version", "1.1"])
    assert args.func(args) == 0
    assert calls == [("s3://b/qa.jsonl", "nq", "slm-experiments/datasets", "1.1")]
    assert capsys.readouterr().out == ("dataset ds-42: slm-experiments/datasets/nq; ingest it with "
                                       "dataset.path=clearml://ds-42 (or clearml://slm-experiments/datasets/nq)\n")


def test_register_without_a_server_is_one_line(tmp_path, capsys):
    from components.core.errors import run_guarded

    args = data_parser().parse_args(["data", "register", str(tmp_path / "qa.jsonl"), "--name", "nq"])
    assert run_guarded(lambda: args.func(args)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: registering a dataset needs a ClearML server") and err.count("\n") == 1
