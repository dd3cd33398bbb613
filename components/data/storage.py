"""S3 / MinIO transfers with boto3: download, upload and list objects by `s3://` URI.

Two kinds of `s3://` URI are accepted:
- AWS form `s3://bucket/key`: the endpoint comes from `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`),
  else from the `sdk.aws.s3.credentials` host in clearml.conf, else AWS itself.
- ClearML form `s3://host:port/bucket/key` (what `output_uri` and artifact URIs look like): the first
  component has a colon, so it is the endpoint; http unless its clearml.conf entry says `secure: true`.

Credentials come from the standard AWS environment (keys, `AWS_PROFILE`) or, when absent, from
clearml.conf's `sdk.aws.s3` section, the way the ClearML SDK reads it. They are never printed, logged
or put in an error message. No ClearML tracking import: the conf is read with ClearML's HOCON parser only.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from components.core.errors import UserError
from components.core.fileio import atomic_path

# Bounded so an endpoint that is down fails in seconds (refused) or well under a minute (silent):
# 3 attempts x 5 s connect timeout + standard-mode backoff.
RETRIES = {"max_attempts": 3, "mode": "standard"}
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 30
DEFAULT_REGION = "us-east-1"  # MinIO accepts any region; boto3 needs one to sign requests
NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound"}
NO_BUCKET_CODES = {"NoSuchBucket"}
AUTH_ERROR_CODES = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"}


@dataclass(frozen=True)
class S3Location:
    endpoint: str | None  # "host:port" for a ClearML-form URI; None: resolved from env / clearml.conf
    bucket: str
    key: str

    def uri(self, key: str | None = None) -> str:
        """The URI of `key` (default: this key) in the same form the user typed."""
        host = f"{self.endpoint}/" if self.endpoint else ""
        return f"s3://{host}{self.bucket}/{self.key if key is None else key}"


@dataclass(frozen=True)
class S3Connection:
    endpoint_url: str | None  # None: boto3's own AWS endpoint
    region: str
    profile: str | None = None
    key: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)


def parse_s3_uri(uri: str) -> S3Location:
    if not uri.startswith("s3://"):
        raise UserError(f"{uri}: not an S3 URI (expected s3://bucket/key or s3://host:port/bucket/key)")
    parts = uri[len("s3://"):].split("/", 1)
    first, rest = parts[0], parts[1] if len(parts) > 1 else ""
    endpoint = None
    if ":" in first:  # ClearML form: the endpoint travels in the URI
        endpoint = first
        first, _, rest = rest.partition("/")
    if not first:
        raise UserError(f"{uri}: no bucket in the S3 URI (expected s3://bucket/key or s3://host:port/bucket/key)")
    return S3Location(endpoint=endpoint, bucket=first, key=rest)


def clearml_conf_path() -> Path:
    return Path(os.environ.get("CLEARML_CONFIG_FILE") or Path.home() / "clearml.conf").expanduser()


def load_clearml_s3_section(path: Path) -> dict[str, Any]:
    """The `sdk.aws.s3` section of a clearml.conf as plain dicts; empty when the file does not exist."""
    if not path.is_file():
        return {}
    from pyhocon import ConfigFactory  # the HOCON parser the ClearML SDK vendors; imported when a conf exists

    try:
        tree = ConfigFactory.parse_file(str(path))
    except Exception as e:  # pyparsing errors quote the offending text, which may be a secret
        where = f" at line {e.lineno}, column {e.col}" if hasattr(e, "lineno") else ""
        raise UserError(f"{path}: invalid clearml.conf syntax{where}") from None
    section = tree.get("sdk.aws.s3", None)
    return section.as_plain_ordered_dict() if section is not None else {}


def _strip_scheme(host: str) -> str:
    return host.split("://", 1)[-1].rstrip("/").lower()


def _conf_entry(s3_conf: dict[str, Any], bucket: str, host: str | None) -> dict[str, Any] | None:
    """The `credentials` entry for this host (and bucket, when the entry names one)."""
    entries = [e for e in s3_conf.get("credentials", []) if e.get("host")]
    if host is not None:
        entries = [e for e in entries if _strip_scheme(e["host"]) == host.lower()]
    for entry in entries:  # an entry naming this bucket beats a host-wide one, as in the ClearML SDK
        if entry.get("bucket") == bucket:
            return entry
    host_wide = [e for e in entries if not e.get("bucket")]
    if host is None and len({_strip_scheme(e["host"]) for e in host_wide}) > 1:
        raise UserError(f"s3://{bucket}: several S3 hosts in {clearml_conf_path()}; set AWS_ENDPOINT_URL "
                        f"or write the URI as s3://host:port/{bucket}/...")
    return host_wide[0] if host_wide else None


def _endpoint_url(host: str, entry: dict[str, Any] | None, env_endpoint: str | None) -> str:
    """http unless the conf entry says `secure`, or AWS_ENDPOINT_URL names this host with https."""
    if entry:
        scheme = "https" if entry.get("secure") else "http"
    elif env_endpoint and urlsplit(env_endpoint).netloc.lower() == host.lower():
        scheme = urlsplit(env_endpoint).scheme
    else:
        scheme = "http"
    return f"{scheme}://{host}"


def _env_endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def _env_connection(endpoint_url: str | None, region: str) -> S3Connection | None:
    """Keys (or a profile) from the AWS environment, read here so a cached client never outlives them."""
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        return S3Connection(endpoint_url, region, key=os.environ["AWS_ACCESS_KEY_ID"],
                            secret=os.environ.get("AWS_SECRET_ACCESS_KEY"),
                            token=os.environ.get("AWS_SESSION_TOKEN") or None)
    if os.environ.get("AWS_PROFILE"):
        return S3Connection(endpoint_url, region, profile=os.environ["AWS_PROFILE"])
    return None


def resolve_connection(loc: S3Location) -> S3Connection:
    """Endpoint and credentials for a location.

    A ClearML-form URI takes the clearml.conf entry for its host when there is one (what the ClearML SDK
    would use for the same URI); otherwise the AWS environment (keys or profile) wins, and clearml.conf's
    default key/secret fill in only when the environment has none.
    """
    s3_conf = load_clearml_s3_section(clearml_conf_path())
    env_endpoint = _env_endpoint()
    host = loc.endpoint or (urlsplit(env_endpoint).netloc if env_endpoint else None)
    entry = _conf_entry(s3_conf, loc.bucket, host)
    if loc.endpoint:
        endpoint_url = _endpoint_url(loc.endpoint, entry, env_endpoint)
    elif env_endpoint:
        endpoint_url = env_endpoint
    else:
        endpoint_url = _endpoint_url(_strip_scheme(entry["host"]), entry, None) if entry else None
    region = (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
              or (entry or {}).get("region") or s3_conf.get("region") or DEFAULT_REGION)
    host_entry_has_keys = bool(loc.endpoint and entry and entry.get("key"))
    env_connection = _env_connection(endpoint_url, region)
    if env_connection and not host_entry_has_keys:
        return env_connection
    source = entry if entry and entry.get("key") else s3_conf
    return S3Connection(endpoint_url, region, key=source.get("key") or None, secret=source.get("secret") or None)


@functools.lru_cache(maxsize=8)  # a client costs ~0.15 s to build (service model); reuse it per connection
def make_client(conn: S3Connection) -> Any:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ProfileNotFound

    try:
        session = boto3.session.Session(profile_name=conn.profile, aws_access_key_id=conn.key,
                                        aws_secret_access_key=conn.secret, aws_session_token=conn.token,
                                        region_name=conn.region)
    except ProfileNotFound:
        raise UserError(f"AWS profile {conn.profile!r} (AWS_PROFILE) not found in the AWS config files") from None
    config = Config(s3={"addressing_style": "path"}, retries=dict(RETRIES), signature_version="s3v4",
                    connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S)
    return session.client("s3", endpoint_url=conn.endpoint_url, config=config)


def _client_for(loc: S3Location) -> Any:
    return make_client(resolve_connection(loc))


def _where(client: Any) -> str:
    return f"S3 endpoint {client.meta.endpoint_url}"


def _no_bucket_error(loc: S3Location, client: Any) -> UserError:
    hint = ""
    if not loc.endpoint and loc.bucket == urlsplit(client.meta.endpoint_url).hostname:
        # s3://minio/clearml/x: a MinIO host without its port reads as a bucket named after the host
        hint = f" (a URI that names the host needs its port: s3://{loc.bucket}:PORT/{loc.key})"
    return UserError(f"{loc.uri()}: bucket {loc.bucket!r} not found at {_where(client)}{hint}")


def _no_key_error(loc: S3Location, client: Any) -> UserError:
    return UserError(f"{loc.uri()}: key {loc.key!r} not found in bucket {loc.bucket!r} at {_where(client)}")


def _translate(err: Exception, loc: S3Location, client: Any) -> UserError:
    """One line naming the bucket/key and endpoint; built from error codes, never from credentials."""
    from botocore import exceptions as boto_errors

    if isinstance(err, (boto_errors.ConnectionError, boto_errors.ConnectionClosedError)):
        return UserError(f"{_where(client)}: unreachable ({type(err).__name__} after "
                         f"{RETRIES['max_attempts']} attempts) while accessing {loc.uri()}")
    if isinstance(err, boto_errors.ReadTimeoutError):
        return UserError(f"{_where(client)}: no answer within {READ_TIMEOUT_S} s while accessing {loc.uri()}")
    if isinstance(err, boto_errors.NoCredentialsError):
        return UserError(f"{loc.uri()}: no S3 credentials for {_where(client)} (set AWS_ACCESS_KEY_ID and "
                         f"AWS_SECRET_ACCESS_KEY, or sdk.aws.s3 in {clearml_conf_path()})")
    if isinstance(err, boto_errors.ClientError):
        code = str(err.response.get("Error", {}).get("Code", "unknown"))
        if code in NO_BUCKET_CODES:
            return _no_bucket_error(loc, client)
        if code in NOT_FOUND_CODES:
            return _no_key_error(loc, client)
        if code in AUTH_ERROR_CODES:
            return UserError(f"{loc.uri()}: access denied by {_where(client)} ({code}); check the credentials "
                             f"for this endpoint")
        return UserError(f"{loc.uri()}: S3 error {code} from {_where(client)}")
    return UserError(f"{loc.uri()}: S3 request failed at {_where(client)} ({type(err).__name__})")


def _s3_errors() -> tuple[type[Exception], ...]:
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    return BotoCoreError, ClientError, S3UploadFailedError


def _require_bucket(client: Any, loc: S3Location) -> None:
    """head_bucket first: a missing bucket or a dead endpoint is named before any transfer starts."""
    from botocore.exceptions import ClientError

    try:
        client.head_bucket(Bucket=loc.bucket)
    except ClientError as e:
        if str(e.response.get("Error", {}).get("Code")) in NOT_FOUND_CODES | NO_BUCKET_CODES:
            raise _no_bucket_error(loc, client) from None
        raise _translate(e, loc, client) from None
    except _s3_errors() as e:
        raise _translate(e, loc, client) from None


def safe_relative_path(name: str) -> PurePosixPath:
    """An object name as a relative path that cannot leave its folder: no '..', '.', empty or root parts."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    if not parts:
        raise UserError(f"{name!r}: object name has no usable file name")
    return PurePosixPath(*parts)


def _inside(dest_dir: Path, relative: PurePosixPath) -> Path:
    target = (dest_dir / relative).resolve()
    if not target.is_relative_to(dest_dir.resolve()):
        raise UserError(f"{relative}: object name would write outside {dest_dir}")
    return target


def _download_object(client: Any, loc: S3Location, key: str, target: Path) -> None:
    with atomic_path(target) as tmp:
        client.download_file(loc.bucket, key, str(tmp))


def _list_keys(client: Any, loc: S3Location, prefix: str) -> list[tuple[str, int]]:
    paginator = client.get_paginator("list_objects_v2")
    return [(obj["Key"], int(obj["Size"]))
            for page in paginator.paginate(Bucket=loc.bucket, Prefix=prefix)
            for obj in page.get("Contents", [])]


def _is_object(client: Any, loc: S3Location) -> bool:
    from botocore.exceptions import ClientError

    if not loc.key or loc.key.endswith("/"):
        return False
    try:
        client.head_object(Bucket=loc.bucket, Key=loc.key)
        return True
    except ClientError as e:
        if str(e.response.get("Error", {}).get("Code")) in NOT_FOUND_CODES:
            return False
        raise


def download_s3(uri: str, dest_dir: Path) -> Path:
    """Download an object into dest_dir (or every object under a `prefix/` into dest_dir/<prefix name>).

    Each file appears under its final name only when complete. Returns the local file or folder.
    """
    loc = parse_s3_uri(uri)
    client = _client_for(loc)
    dest_dir = Path(dest_dir)
    _require_bucket(client, loc)
    try:
        if _is_object(client, loc):
            target = _inside(dest_dir, PurePosixPath(safe_relative_path(loc.key).name))
            _download_object(client, loc, loc.key, target)
            return target
        prefix = loc.key if not loc.key or loc.key.endswith("/") else loc.key + "/"
        objects = _list_keys(client, loc, prefix)
        if not objects:
            raise _no_key_error(loc, client)
        folder = dest_dir / safe_relative_path(prefix).name if prefix else dest_dir / loc.bucket
        for key, _size in objects:
            if not key.endswith("/"):  # folder markers some tools create carry no data
                _download_object(client, loc, key, _inside(folder, safe_relative_path(key[len(prefix):])))
        return folder
    except _s3_errors() as e:
        raise _translate(e, loc, client) from None


def _upload_targets(local: Path, key: str) -> list[tuple[Path, str]]:
    if local.is_file():
        return [(local, key + local.name if not key or key.endswith("/") else key)]
    prefix = key.rstrip("/") + "/" if key else ""
    return [(path, prefix + path.relative_to(local).as_posix())
            for path in sorted(local.rglob("*")) if path.is_file()]


def upload_s3(local: Path, uri: str) -> str:
    """Upload a file (to the key, or into a `prefix/`) or a folder recursively under the key as prefix.

    Returns the URI of the uploaded object, or of the prefix for a folder.
    """
    local = Path(local)
    if not local.exists():
        raise UserError(f"{local}: file or folder not found")
    loc = parse_s3_uri(uri)
    client = _client_for(loc)
    _require_bucket(client, loc)
    targets = _upload_targets(local, loc.key)
    try:
        for path, key in targets:
            client.upload_file(str(path), loc.bucket, key)
    except _s3_errors() as e:
        raise _translate(e, loc, client) from None
    if local.is_file():
        return loc.uri(targets[0][1])
    return loc.uri(loc.key.rstrip("/") + "/" if loc.key else "")


def list_s3(uri: str) -> list[tuple[str, int]]:
    """(key, size in bytes) of every object whose key starts with the URI's key, in key order."""
    loc = parse_s3_uri(uri)
    client = _client_for(loc)
    _require_bucket(client, loc)
    try:
        return _list_keys(client, loc, loc.key)
    except _s3_errors() as e:
        raise _translate(e, loc, client) from None
