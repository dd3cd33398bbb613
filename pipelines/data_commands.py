"""`slm data upload|download|ls`: copy datasets and artifacts to and from S3 / MinIO.

    slm data upload data/NQ-open.dev.jsonl s3://datasets/nq/
    slm data download s3://datasets/nq/NQ-open.dev.jsonl data/
    slm data ls s3://minio:9000/clearml/
    slm data register data/NQ-open.dev.jsonl --name nq-open --version 1.0   # a ClearML Dataset version

Both URI kinds work: s3://bucket/key (endpoint from AWS_ENDPOINT_URL or clearml.conf) and
s3://host:port/bucket/key (ClearML's form). Keys come from the AWS environment or clearml.conf.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from components.data.storage import download_s3, list_s3, upload_s3

NEEDS_S3 = ("Needs S3 keys (the AWS environment or clearml.conf sdk.aws.s3) and the endpoint for s3://bucket/key "
            "(AWS_ENDPOINT_URL or clearml.conf).")
URI_HELP = "s3://bucket/key (endpoint from AWS_ENDPOINT_URL or clearml.conf) or s3://host:port/bucket/key"


def cmd_upload(args: argparse.Namespace) -> int:
    print(upload_s3(Path(args.local), args.s3_uri))
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    print(download_s3(args.s3_uri, Path(args.dest)))
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    objects = list_s3(args.s3_uri)
    for key, size in objects:
        print(f"{size:>12}  {key}")
    if not objects:
        print(f"no objects under {args.s3_uri}", file=sys.stderr)
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    from clearml_tasks._datasets import register_dataset

    dataset_id = register_dataset(args.source, args.name, args.project, args.version)
    print(f"dataset {dataset_id}: {args.project}/{args.name}; ingest it with dataset.path=clearml://{dataset_id} "
          f"(or clearml://{args.project}/{args.name})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `data` with its `upload`, `download` and `ls` subcommands; each sets `func(args) -> int`."""
    data = subparsers.add_parser("data", help="upload, download and list files in S3 / MinIO",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = data.add_subparsers(dest="data_command", required=True, metavar="{upload,download,ls,register}")

    upload = actions.add_parser("upload", help="upload a file, or a folder recursively, to an S3 URI",
                                description="Upload a file, or a folder recursively, to S3 / MinIO. " + NEEDS_S3)
    upload.add_argument("local", help="local file or folder")
    upload.add_argument("s3_uri", help=URI_HELP + "; a key ending in / (or a folder) is a prefix")
    upload.set_defaults(func=cmd_upload)

    download = actions.add_parser("download", help="download an object, or every object under a prefix/",
                                  description="Download an object, or every object under a prefix/. " + NEEDS_S3)
    download.add_argument("s3_uri", help=URI_HELP)
    download.add_argument("dest", nargs="?", default=".", help="local folder (default: the current one)")
    download.set_defaults(func=cmd_download)

    ls = actions.add_parser("ls", help="list objects (size in bytes, key) under an S3 URI prefix",
                            description="List objects (size in bytes, key) under an S3 URI prefix. " + NEEDS_S3)
    ls.add_argument("s3_uri", help=URI_HELP)
    ls.set_defaults(func=cmd_ls)

    reg = actions.add_parser("register", help="a file or S3 object as a new version of a ClearML Dataset",
                             description="Make a file or S3 object a new version of a ClearML Dataset (the "
                                         "previous version of the same name its parent); ingest it with "
                                         "dataset.path=clearml://<id>. Needs a ClearML server (and S3 keys for an "
                                         "s3:// source).")
    reg.add_argument("source", help="local file or s3://bucket/key")
    reg.add_argument("--name", required=True, help="dataset name, e.g. nq-open")
    reg.add_argument("--project", default="slm-experiments/datasets", help="ClearML project of the dataset")
    reg.add_argument("--version", help="version label (default: ClearML's next version)")
    reg.set_defaults(func=cmd_register)
