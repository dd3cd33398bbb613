"""Which tracking a run gets (none / offline / online), decided before clearml is imported and never a
hang: an unreachable or silent server is a fast one-line error, no configuration means offline, and the
generated offline conf layers over the user's own without including itself."""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from clearml_tasks._tracking import resolve_tracking
from components.core.errors import UserError


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_is_a_fast_user_error(monkeypatch):
    host = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.delenv("CLEARML_OFFLINE_MODE", raising=False)
    monkeypatch.setenv("CLEARML_API_HOST", host)
    started = time.perf_counter()
    with pytest.raises(UserError) as e:
        resolve_tracking("auto")
    elapsed = time.perf_counter() - started
    assert elapsed < 6, elapsed
    assert host in str(e.value) and "--offline" in str(e.value)


def test_silent_server_is_a_user_error_within_the_ping_timeout(monkeypatch):
    """A server that accepts the connection and never answers must not hang the run."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        host = f"http://127.0.0.1:{listener.getsockname()[1]}"
        monkeypatch.delenv("CLEARML_OFFLINE_MODE", raising=False)
        monkeypatch.setenv("CLEARML_API_HOST", host)
        started = time.perf_counter()
        with pytest.raises(UserError, match="--offline") as e:
            resolve_tracking("auto")
        elapsed = time.perf_counter() - started
    assert elapsed < 8, elapsed
    assert host in str(e.value)


def test_no_configuration_means_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("SLM_CACHE_DIR", str(tmp_path / "slm-cache"))  # the offline conf goes here
    no_conf = os.environ["CLEARML_CONFIG_FILE"]
    monkeypatch.setenv("CLEARML_CONFIG_FILE", no_conf)  # resolve_tracking repoints it; restored afterwards
    monkeypatch.delenv("CLEARML_OFFLINE_MODE", raising=False)
    monkeypatch.delenv("CLEARML_API_HOST", raising=False)
    assert resolve_tracking("auto") == "offline"
    assert Path(os.environ["CLEARML_CONFIG_FILE"]) == tmp_path / "slm-cache" / "clearml-offline.conf"
    monkeypatch.setenv("CLEARML_CONFIG_FILE", no_conf)
    monkeypatch.setenv("CLEARML_API_HOST", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("CLEARML_OFFLINE_MODE", "1")
    assert resolve_tracking("auto") == "offline"  # forced offline: the server is not even pinged
    assert resolve_tracking("none") == "none"


@pytest.mark.parametrize("with_user_conf", [False, True])
def test_resolving_twice_keeps_the_offline_conf_loadable(tmp_path, monkeypatch, with_user_conf):
    """resolve_tracking repoints CLEARML_CONFIG_FILE at its own offline conf; a second call in the same process
    (or in a child that inherits the variable) must not make that file include itself."""
    from clearml.utilities.pyhocon import ConfigFactory

    monkeypatch.setenv("SLM_CACHE_DIR", str(tmp_path / "slm-cache"))  # never touch the shared cache's conf
    user_conf = tmp_path / "user-clearml.conf"
    if with_user_conf:
        user_conf.write_text('api { api_server: "http://clearml.example:8008" }\n')
    monkeypatch.setenv("CLEARML_CONFIG_FILE", str(user_conf))
    assert resolve_tracking("offline") == "offline"
    assert resolve_tracking("offline") == "offline"
    conf_path = os.environ["CLEARML_CONFIG_FILE"]
    text = Path(conf_path).read_text()
    assert f'include file("{conf_path}")' not in text, f"{conf_path} includes itself:\n{text}"
    conf = ConfigFactory.parse_file(conf_path)
    assert conf.get("sdk.development.report_use_subprocess") is False
    if with_user_conf:
        assert conf.get("api.api_server") == "http://clearml.example:8008"
