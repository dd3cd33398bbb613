"""Template registration without a server: the repository address ClearML must store, the read-back
check of what it stored, and which task counts as a template (never a clone of one)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from components.core.errors import UserError
from pipelines.templates import GitSource, check_stored, is_template, normalize_repo_url, stage_image


@pytest.mark.parametrize("url, expected", [
    ("https://github.com/org/slm.git", "https://github.com/org/slm.git"),
    ("https://user:ghp_secret@github.com/org/slm.git", "https://github.com/org/slm.git"),
    ("git@github.com:org/slm.git", "git@github.com:org/slm.git"),
    ("ssh://git@host:2222/org/slm.git", "ssh://git@host:2222/org/slm.git"),
    ("file:///srv/git/slm.git", "file:///srv/git/slm.git"),
    ("/srv/git/slm.git", "file:///srv/git/slm.git")])
def test_repository_addresses_are_stored_as_agents_can_clone_them(url, expected):
    warnings: list[str] = []
    assert normalize_repo_url(url, warnings.append) == expected
    assert bool(warnings) == ("ghp_secret" in url)
    assert all("ghp_secret" not in w for w in warnings)


def test_a_relative_local_path_becomes_an_absolute_file_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert normalize_repo_url("repo.git", lambda _: None) == f"file://{tmp_path}/repo.git"


def _task(repo="file:///srv/git/slm.git", branch="main", commit="abc", entry="clearml_tasks/eval.py",
          container=None, **extra):
    script = SimpleNamespace(repository=repo, branch=branch, version_num=commit, entry_point=entry)
    return SimpleNamespace(id="t1", data=SimpleNamespace(script=script, container=container), **extra)


def test_what_the_server_stored_is_checked():
    source = GitSource("file:///srv/git/slm.git", "main", "abc")
    check_stored(_task(), "eval", source)
    with pytest.raises(UserError, match="repository '\\(none\\)'.*--repo"):
        check_stored(_task(repo=""), "eval", source)  # what a scheme-less local path used to give
    with pytest.raises(UserError, match="entry point 'ingest.py'"):
        check_stored(_task(entry="ingest.py"), "eval", source)


def test_the_stored_container_is_checked():
    source = GitSource("file:///srv/git/slm.git", "main", "abc")
    stored = _task(container={"image": "task:cpu", "arguments": "--ipc=host", "setup_shell_script": None})
    check_stored(stored, "eval", source, ("task:cpu", "--ipc=host"))
    check_stored(_task(container={"image": "task:cpu"}), "eval", source, ("task:cpu", ""))  # no arguments: ''
    with pytest.raises(UserError, match="container \\('', ''\\); expected \\('task:cpu', ''\\)"):
        check_stored(_task(container={}), "eval", source, ("task:cpu", ""))
    with pytest.raises(UserError, match="container"):
        check_stored(stored, "eval", source, ("task:cpu", ""))


def test_stages_without_gpu_work_get_the_cpu_image():
    from clearml_tasks.stages import STAGES

    images = {stage: stage_image(stage, "task:cuda", "task:cpu") for stage in STAGES}
    assert {s for s, image in images.items() if image == "task:cpu"} == {"ingest", "index", "merge", "report"}
    assert all(images[s] == "task:cuda" for s in ("eval", "finetune", "benchmark"))
    assert {stage_image(s, "task:cuda", None) for s in STAGES} == {"task:cuda"}  # no CPU image: one for all


def test_a_clone_of_a_template_is_not_a_template():
    def with_marker(task_id, marker):
        task = _task()
        task.id = task_id
        task.get_user_properties = lambda: {"slm_template": {"value": marker}} if marker else {}
        return task

    assert is_template(with_marker("t1", "t1"))
    assert not is_template(with_marker("clone-of-t1", "t1"))  # a clone copies the original's marker
    assert not is_template(with_marker("t2", None))
