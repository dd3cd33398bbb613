"""Which kind of tracking a run gets (`none`, `offline` or `online`; called "tracking" in code, never
"mode", which is the prompt mode of an eval), decided before clearml is imported, and never a hang:

- `none` (`--no-clearml`): no tracking at all.
- `offline` (`CLEARML_OFFLINE_MODE=1`, or no ClearML configuration): a real offline session under
  $CLEARML_CACHE_DIR/offline, importable later with `Task.import_offline_session`.
- `online`: a configured server that answers its ping within seconds; one that does not is an error
  naming the address and the way out, instead of the SDK's minutes of retries.
"""
from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from components.core.errors import UserError
from components.core.fileio import write_text
from components.core.outputs import cache_root

PING_TIMEOUT_SECONDS = 5.0
# Offline close() waits ~11 s for the reporting subprocess unless this is set in a config *file*.
OFFLINE_CONF = "sdk { development { report_use_subprocess: false } }\n"


# What the SDK prints about each offline session (the task, its folder, its zip): three lines a step. The
# local runner says once per step where the session went instead (pipelines.local), so `slm` drops these.
OFFLINE_SESSION_CHATTER = ("ClearML Task: created new task id=offline-",
                           "ClearML running in offline mode, session stored in ",
                           "ClearML Task: Offline session stored in ")

USER_CONF_ENV = "SLM_USER_CLEARML_CONFIG"  # the user's own file, remembered once we repoint the SDK


def offline_config_path() -> Path:
    return cache_root() / "clearml-offline.conf"


def user_config_file() -> Path | None:
    """The user's clearml.conf (never our generated offline layer, which includes it)."""
    chosen = os.environ.get(USER_CONF_ENV) or os.environ.get("CLEARML_CONFIG_FILE") or Path.home() / "clearml.conf"
    path = Path(chosen).expanduser()
    if path.resolve() == offline_config_path().resolve():
        return None
    return path if path.is_file() else None


def configured_api_host() -> str:
    """The API server the SDK would use ('' when ClearML is not configured)."""
    host = os.environ.get("CLEARML_API_HOST", "")
    conf = user_config_file()
    if not host and conf is not None:
        from clearml.utilities.pyhocon import ConfigFactory  # a parser only: no session is started

        try:
            host = ConfigFactory.parse_file(str(conf)).get("api.api_server", "")
        except Exception as e:  # pyhocon raises several types; all mean the same to the user
            raise UserError(f"{conf}: cannot parse ClearML config ({e})") from None
    return host


def server_answers(host: str, timeout: float = PING_TIMEOUT_SECONDS) -> bool:
    try:
        with urllib.request.urlopen(f"{host.rstrip('/')}/debug.ping", timeout=timeout) as response:
            return response.status < 500
    except urllib.error.HTTPError as e:
        return e.code < 500  # an answer, even a refusal, means the server is up
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _use_offline_config() -> None:
    """Point the SDK at a config that keeps offline close() fast, layered over the user's own file."""
    user_conf = user_config_file()
    path = offline_config_path()
    include = f'include file("{user_conf}")\n' if user_conf else ""
    if not path.is_file() or path.read_text() != include + OFFLINE_CONF:
        write_text(path, include + OFFLINE_CONF)  # atomic: a concurrent run never reads half a file
    if user_conf:
        os.environ[USER_CONF_ENV] = str(user_conf)
    os.environ["CLEARML_CONFIG_FILE"] = str(path)


def resolve_tracking(requested: str = "auto") -> str:
    """`none`, `offline` or `online` for a requested tracking of `none`, `offline` or `auto`."""
    if requested == "none":
        return "none"
    if requested == "offline" or os.environ.get("CLEARML_OFFLINE_MODE", "").lower() in ("1", "true", "yes"):
        _use_offline_config()
        return "offline"
    host = configured_api_host()
    if not host:
        _use_offline_config()
        return "offline"
    if not server_answers(host):
        raise UserError(f"ClearML server {host} does not answer (checked for {PING_TIMEOUT_SECONDS:.0f} s); "
                        "start it, fix api.api_server, or run with --offline or --no-clearml")
    return "online"
