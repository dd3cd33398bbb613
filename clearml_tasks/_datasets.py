"""Data as versioned ClearML Datasets: `dataset.path=clearml://<dataset id>` or
`clearml://<project>/<name>[@<version>]` read by the ingest stage (the exact dataset id it read lands in
its results and user properties), its normalised output published as a Dataset version of its own, and
`slm data register` for a file or an S3 object. All of it needs a server; offline it says so in one line."""
from __future__ import annotations

import re
from pathlib import Path

from components.core.config import AppConfig
from components.core.errors import UserError

SCHEME = "clearml://"
DATASET_ID = re.compile(r"^[0-9a-f]{32}$")


def parse_ref(path: str) -> dict[str, str]:
    """Dataset.get's arguments for a `clearml://` path."""
    ref = path.removeprefix(SCHEME).strip("/")
    if not ref:
        raise UserError(f"dataset.path={path!r}: expected clearml://<dataset id> or clearml://<project>/<name>[@<version>]")
    if DATASET_ID.match(ref):
        return {"dataset_id": ref}
    name_part, _, version = ref.partition("@")
    project, _, name = name_part.rpartition("/")
    if not name:
        raise UserError(f"dataset.path={path!r}: no dataset name")
    return {k: v for k, v in (("dataset_project", project), ("dataset_name", name), ("dataset_version", version)) if v}


def _require_server(what: str) -> None:
    from clearml_tasks._tracking import resolve_tracking

    if resolve_tracking("auto") != "online":
        raise UserError(f"{what} needs a ClearML server (api.api_server in clearml.conf or CLEARML_API_HOST)")


def resolve_dataset(cfg: AppConfig) -> tuple[AppConfig, dict]:
    """The config with a `clearml://` dataset replaced by its local copy, and what was read (id, name,
    version); a non-ClearML path is returned as it is, with {}."""
    path = cfg.dataset.path
    if not path.startswith(SCHEME):
        return cfg, {}
    _require_server(f"dataset.path={path}")
    from clearml import Dataset

    try:
        dataset = Dataset.get(**parse_ref(path))
    except ValueError as e:
        raise UserError(f"dataset.path={path!r}: no such ClearML dataset ({str(e).splitlines()[0]})") from None
    folder = Path(dataset.get_local_copy())
    if (folder / "questions.jsonl").is_file() and (folder / "passages.jsonl").is_file():
        local = folder  # a published ingest output
    else:
        files = [p for p in folder.rglob("*") if p.is_file()]
        if len(files) != 1:
            raise UserError(f"dataset.path={path!r}: dataset {dataset.id} holds {len(files)} files; expected one data "
                            "file or an ingest output")
        local = files[0]
    data = cfg.to_dict()
    data["dataset"]["path"] = str(local)
    return AppConfig.from_dict(data), {"dataset_id": dataset.id, "dataset_name": dataset.name,
                                       "dataset_version": dataset.version or ""}


def publish_ingested(output_dir: Path, cfg: AppConfig, source: dict) -> str:
    """The ingest output as a new version of the dataset `<dataset.name>-ingested` in `<clearml.project>/datasets`."""
    from clearml import Dataset

    dataset = Dataset.create(dataset_name=f"{cfg.dataset.name}-ingested",
                             dataset_project=f"{cfg.clearml.project}/datasets",
                             description=f"slm ingest of {source.get('dataset_id') or cfg.dataset.path}")
    dataset.add_files(str(output_dir), wildcard=["*.jsonl", "manifest.json"], recursive=False)
    dataset.upload()
    dataset.finalize()
    return dataset.id


def register_dataset(path: str, name: str, project: str, version: str | None = None) -> str:
    """`slm data register`: a file (or s3:// object, downloaded first) as a new ClearML Dataset version, the
    newest version of the same project/name linked as its parent."""
    _require_server("registering a dataset")
    from clearml import Dataset

    from components.core.config import DatasetConfig
    from components.data.sources import resolve_source

    local = resolve_source(DatasetConfig(path=path))
    try:
        parents = [Dataset.get(dataset_project=project, dataset_name=name).id]
    except ValueError:
        parents = []
    dataset = Dataset.create(dataset_name=name, dataset_project=project, dataset_version=version,
                             parent_datasets=parents or None)
    dataset.add_files(str(local))
    dataset.upload()
    dataset.finalize()
    return dataset.id
