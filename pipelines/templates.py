"""The stage templates on a ClearML server: one published Task per stage, cloned by researchers in the UI,
by pipelines and by sweeps.

    slm templates register [--project P] [--runs-project R] [--image I] [--cpu-image C] [--docker-args A]
                           [--branch B]

Each template points at `clearml_tasks/<file>.py` in the repository at a fixed commit, runs in the task
image (its container: the GPU image for stages that want a GPU, the CPU image for the rest), and carries
the stage's config sections (plus `inputs/<parent>`) with their default values, so the UI shows
editable `Section/field` parameters before the template has ever run. The template code calls `Task.init`
itself (`add_task_init_call=False`).
"""
from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit, urlunsplit

from clearml_tasks._clones import RUNS_PROJECT_PROPERTY, TEMPLATE_PROPERTY, TEMPLATE_TAG
from components.core.config import AppConfig
from components.core.config_help import field_choices, field_help
from components.core.errors import UserError
from clearml_tasks.stages import STAGES

# The tag docker/Dockerfile documents and docker/docker-compose.yml (SLM_TASK_IMAGE) runs.
DEFAULT_TASK_IMAGE = "slm-experiments-task:0.1.0"
DEFAULT_TEMPLATE_PROJECT = f"{AppConfig().clearml.project}/templates"
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class GitSource:
    """Where an agent checks out the code: repository URL, branch and the exact commit."""
    repo: str
    branch: str
    commit: str  # empty: the branch head at run time, and then ClearML never serves a step from cache (#415)


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, text=True, capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def normalize_repo_url(url: str, warn: Callable[[str], None] = _warn) -> str:
    """The address agents clone from, as ClearML must store it. A local path becomes `file://<absolute
    path>` (ClearML reads a scheme-less address as a folder to inspect and stores an empty repository);
    credentials in an http(s) address are dropped, since every template, clone and step would show them:
    agents authenticate with agent.git_user / git_pass (or SSH keys) in their clearml.conf."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and "@" in parts.netloc:
        warn("the repository URL holds credentials; they are not stored on the templates (give agents "
             "agent.git_user/agent.git_pass or an SSH key in their clearml.conf)")
        return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    scp_like = re.match(r"^[\w.-]+@[\w.-]+:", url)  # git@host:org/repo.git
    if not parts.scheme and not scp_like:
        return Path(url).expanduser().resolve().as_uri()
    return url


def git_source(repo_url: str | None = None, branch: str | None = None, commit: str | None = None,
               warn: Callable[[str], None] = _warn) -> GitSource:
    """Fill what was not given from the checkout: `origin`'s URL, the current branch, its HEAD commit.

    A commit that no remote branch contains cannot be checked out by an agent; a missing commit makes
    every pipeline step uncacheable (#415). Both are warned about, not refused: a branch-head template
    is a legitimate choice for a moving target.
    """
    repo = repo_url or _git("remote", "get-url", "origin")
    if not repo:
        raise UserError("no repository URL: this checkout has no `origin` remote; pass --repo URL "
                        "(the address agents clone from)")
    local_branch = _git("rev-parse", "--abbrev-ref", "HEAD")
    branch = branch or local_branch
    if not branch or branch == "HEAD":
        raise UserError("cannot tell the branch (detached HEAD?); pass --branch NAME")
    if commit is None:
        # The current checkout's commit only describes the branch we are on; for another branch use
        # the head origin knows about.
        commit = _git("rev-parse", "HEAD" if branch == local_branch else f"origin/{branch}")
    if not commit:
        warn(f"no commit id for branch {branch!r}: agents run the branch head, and pipeline steps are "
             "never served from cache without a commit id (clearml #415)")
    elif not _git("branch", "-r", "--contains", commit):
        warn(f"commit {commit[:12]} is on no remote branch: push it before running the templates, or "
             "agents fail to check it out")
    if commit and _git("status", "--porcelain", "--untracked-files=no"):
        warn("the working tree has uncommitted changes; templates run the committed code only")
    return GitSource(repo=normalize_repo_url(repo, warn), branch=branch, commit=commit)


def stored_source(task) -> GitSource:
    """The code a task on the server points at (what an agent checks out)."""
    script = task.data.script
    return GitSource(repo=script.repository or "", branch=script.branch or "", commit=script.version_num or "")


def stage_image(stage: str, image: str, cpu_image: str | None) -> str:
    """The container image a stage's template names: the CPU image for a stage without GPU work."""
    return cpu_image if cpu_image and not STAGES[stage].gpu else image


def stored_container(task) -> tuple[str, str]:
    """(image, arguments) of the task's container as the server stored it: what a docker agent runs."""
    container = task.data.container or {}
    return container.get("image") or "", container.get("arguments") or ""


def check_stored(task, stage: str, source: GitSource, container: tuple[str, str] | None = None) -> None:
    """Read back what the server stored: an agent runs that, not what we asked for."""
    if container is not None and stored_container(task) != container:
        raise UserError(f"the server stored template {stage!r} ({task.id}) with container "
                        f"{stored_container(task)}; expected {container}")
    stored, entry = stored_source(task), task.data.script.entry_point or ""
    if stored != source or Path(entry) != Path(STAGES[stage].script):
        raise UserError(f"the server stored template {stage!r} ({task.id}) with repository "
                        f"{stored.repo or '(none)'!r}, branch {stored.branch or '(none)'!r}, commit "
                        f"{stored.commit or '(none)'!r}, entry point {entry!r}; expected {source.repo!r}, "
                        f"{source.branch!r}, {source.commit or '(branch head)'!r}, {STAGES[stage].script!r}. "
                        "Pass --repo with an address agents can clone (https://, ssh:// or file://)")


def template_parameters(stage: str) -> dict[str, Any]:
    """`Section/field -> default` exactly as the stage connects them (`clearml_tasks._task.connect_config`):
    the registry's template keys, inputs empty."""
    data = AppConfig().to_dict()
    return {key: "" if key.startswith("inputs/") else data[key.split("/")[0]][key.split("/")[1]]
            for key in STAGES[stage].template_keys()}


def input_description(stage: str, name: str) -> str:
    """What `inputs/<name>` takes, and what an empty one does (the stage builds it, or it is required)."""
    spec = STAGES[stage]
    text = (f"ids of the {name} tasks whose `output` artifacts this stage reads, comma-separated" if name in spec.many
            else f"id of a finished {name} task whose `output` artifact this stage reads")
    if name in spec.only_when:
        text += " (read only where this task's config needs it: eval in retriever_context)"
    if name in spec.builds:
        sections = ", ".join(f"{s}/*" for s in STAGES[name].template_sections)
        return text + f"; empty: this task runs the {name} stage itself from its own {sections} (cached per machine)"
    return text + "; required"


def parameter_descriptions(stage: str) -> dict[str, str]:
    """`Section/field -> help` (with its choices): what the ClearML UI shows beside each editable parameter."""
    return {key: input_description(stage, key.split("/")[1]) if key.startswith("inputs/") else field_help(
        *key.split("/", 1)) for key in template_parameters(stage)}


def default_runs_project(template_project: str) -> str:
    """Where runs of cloned templates go: the templates project's parent (`slm-experiments` for
    `slm-experiments/templates`), else the default ClearML project."""
    parent = template_project.rpartition("/")[0]
    return parent or AppConfig().clearml.project


def template_description(stage: str, runs_project: str) -> str:
    """The template's description in the UI: what the stage does, what to edit first, its inputs, what it
    produces, and how to run it."""
    spec = STAGES[stage]

    def key_text(key: str) -> str:
        choices = field_choices(*key.split(".", 1))
        return key.replace(".", "/", 1) + (f" ({' | '.join(map(str, choices))})" if choices else "")

    lines = [f"{spec.name}: {spec.help}."]
    if spec.edit_first:
        lines.append("Edit first (CONFIGURATION > HYPERPARAMETERS): " + ", ".join(map(key_text, spec.edit_first)) + ".")
    lines += [f"inputs/{name}: {input_description(stage, name)}." for name in spec.inputs]
    if spec.produces:
        lines.append(f"Produces: {spec.produces}.")
    lines.append(f"This template is published (read-only): right-click > Clone, edit the clone, Enqueue it. The run "
                 f"is named after what it ran (e.g. '{spec.run_name(AppConfig())}') and moves to project "
                 f"{runs_project}.")
    return "\n".join(lines)


def templates_project_description(runs_project: str) -> str:
    return (f"Stage templates of slm-experiments, one per stage (published, read-only): clone one, edit its "
            f"hyperparameters (each has a description; choices are listed), enqueue it. Runs land in "
            f"{runs_project}. Registered by `slm templates register`; pipelines (`slm pipeline start`) clone "
            "them too.")


def protect_and_describe(task, stage: str, runs_project: str) -> None:
    """Publish the template (read-only in the UI: a click on it can no longer edit or enqueue it; cloning
    still works) with its description, and record where its clones' runs go."""
    task.set_comment(template_description(stage, runs_project))
    task.set_user_properties({"name": RUNS_PROJECT_PROPERTY, "value": runs_project,
                              "description": "the project a run of a clone of this template moves to"})
    task.mark_stopped(force=True, status_message="registered template")
    task.publish(ignore_errors=False)


def describe_project(project: str, text: str) -> None:
    from clearml import Task
    from clearml.backend_api.session.client import APIClient

    APIClient().projects.update(project=Task.get_project_id(project), description=text)


def _package_args(requirements: Sequence[str] | Path | None) -> dict[str, Any]:
    """None: install nothing (the task image has every dependency); a list: pip packages; a Path: a file."""
    if requirements is None:
        return {"packages": ""}
    if isinstance(requirements, Path):
        if not requirements.is_file():
            raise UserError(f"{requirements}: requirements file not found")
        return {"requirements_file": str(requirements)}
    return {"packages": list(requirements)}


def register_templates(project: str = DEFAULT_TEMPLATE_PROJECT, repo_url: str | None = None,
                       branch: str | None = None, commit: str | None = None,
                       docker_image: str = DEFAULT_TASK_IMAGE,
                       requirements: Sequence[str] | Path | None = None,
                       log: Callable[[str], None] = print, cpu_image: str | None = None,
                       docker_args: str = "", runs_project: str | None = None) -> dict[str, str]:
    """Create one published template Task per stage on the server; returns stage -> task id.

    Each template's container is `docker_image` (a stage that wants a GPU) or `cpu_image` (default: the
    same), with `docker_args`: a clone in the UI runs there on any docker agent, whatever the agent's own
    default image (a task's image wins over the agent's `--docker`).

    Registering again creates new templates; lookups (`pipeline start`, `sweep`) take the most recently
    created one. A template marks itself: its user property `slm_template` holds its own id, which a
    clone (keeping name, project, tags and properties) copies but cannot match. A clone's run moves to
    `runs_project` (default: the templates project's parent).
    """
    from clearml import Task

    if Task.is_offline():
        raise UserError("registering templates needs a ClearML server; offline mode cannot create tasks")
    source = git_source(repo_url, branch, commit)
    runs_project = runs_project or default_runs_project(project)
    ids: dict[str, str] = {}
    for stage in STAGES.values():
        container = (stage_image(stage.name, docker_image, cpu_image), docker_args)
        task = Task.create(
            project_name=project, task_name=stage.name, task_type=stage.task_type,
            repo=source.repo, branch=source.branch, commit=source.commit or None,
            script=stage.script, working_directory=".", docker=container[0], docker_args=docker_args or None,
            add_task_init_call=False, **_package_args(requirements))
        # set_parameters has no descriptions; its private twin takes them (what the UI shows as help).
        task._set_parameters(template_parameters(stage.name),
                             **{"__parameters_descriptions": parameter_descriptions(stage.name)})
        task.set_user_properties({"name": TEMPLATE_PROPERTY, "value": task.id,
                                  "description": "the id this template was registered with; a clone keeps "
                                                 "the original's, so it is never taken for a template"})
        task.add_tags([TEMPLATE_TAG])
        task.reload()
        check_stored(task, stage.name, source, container)
        protect_and_describe(task, stage.name, runs_project)
        ids[stage.name] = task.id
        log(f"{stage.name:<10} {task.id}  {project}/{stage.name}  ({stage.script}; {container[0]})")
    describe_project(project, templates_project_description(runs_project))
    commit_text = source.commit[:12] or "(branch head)"
    images = docker_image if not cpu_image or cpu_image == docker_image else f"{docker_image}, CPU stages {cpu_image}"
    log(f"code: {source.repo} @ {source.branch} {commit_text}; image: {images}"
        + (f"; docker arguments: {docker_args}" if docker_args else "") + f"; runs of clones go to {runs_project}")
    return ids


def is_template(task) -> bool:
    """A registered template, not a clone of one (see register_templates)."""
    marker = task.get_user_properties().get(TEMPLATE_PROPERTY) or {}
    return marker.get("value") == task.id


def find_templates(project: str, stages: Sequence[str]) -> dict[str, object]:
    """stage -> the newest registered template Task; a missing one is an error naming the fix."""
    from clearml import Task

    found = {}
    for stage in dict.fromkeys(stages):
        try:
            candidates = Task.get_tasks(project_name=project, task_name=f"^{re.escape(stage)}$",
                                        tags=[TEMPLATE_TAG],
                                        task_filter={"order_by": ["-created"],
                                                     "system_tags": ["-archived"]})
        except ValueError:  # the project itself does not exist
            candidates = []
        templates = [t for t in candidates if t.name == stage and is_template(t)]
        if not templates:
            raise UserError(f"no {stage!r} template in project {project!r}; "
                            f"run `slm templates register --project {project}` first")
        found[stage] = templates[0]
    return found


def find_template_ids(project: str, stages: Sequence[str]) -> dict[str, str]:
    """stage -> id of the newest registered template."""
    return {stage: task.id for stage, task in find_templates(project, stages).items()}


def untagged_job_class():
    """ClearML's job class for pipeline steps and sweep jobs, minus the `template` tag a clone inherits
    (a step or a trial is not a template)."""
    from clearml.automation.job import ClearmlJob

    class UntaggedJob(ClearmlJob):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if not self.is_cached_task() and TEMPLATE_TAG in self.task.get_tags():
                self.task.set_tags([tag for tag in self.task.get_tags() if tag != TEMPLATE_TAG])

    return UntaggedJob
