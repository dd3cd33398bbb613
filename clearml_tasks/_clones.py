"""A registered template and the runs of its clones, told apart on the server.

A template carries the tag `template` and the user property `slm_template` = its own id; cloning copies
name, project, tags and properties (and the UI names the clone "Clone Of eval"). So a task started by an
agent that carries the tag but whose marker names another task is a researcher's clone: it drops the
tag and the marker, takes a name that says what it ran (`eval · oracle_context · smollm2_135m · demo`)
and moves to the runs project the template recorded. Pipeline steps and sweep jobs are created without the
tag (pipelines.templates.untagged_job_class) and keep their names and projects.
"""
from __future__ import annotations

TEMPLATE_TAG = "template"
TEMPLATE_PROPERTY = "slm_template"  # user property: the template's own id
RUNS_PROJECT_PROPERTY = "slm_runs_project"  # user property: where runs of its clones go


def is_clone_of_template(task) -> bool:
    """A copy of a registered template (not the template itself, not a pipeline step or sweep job)."""
    marker = (task.get_user_properties().get(TEMPLATE_PROPERTY) or {}).get("value")
    return TEMPLATE_TAG in (task.get_tags() or []) and bool(marker) and marker != task.id


def leave_templates(task, name: str) -> str:
    """Turn a clone of a template into a run: no template tag or marker, named `name`, in the runs project.
    Returns the project it moved to ('' when `task` is no such clone)."""
    if not is_clone_of_template(task):
        return ""
    runs_project = (task.get_user_properties().get(RUNS_PROJECT_PROPERTY) or {}).get("value") or ""
    task.set_tags([tag for tag in task.get_tags() if tag != TEMPLATE_TAG])
    task.delete_user_properties([{"section": "properties", "name": TEMPLATE_PROPERTY}])  # user properties' section
    task.set_name(name)
    if runs_project:
        task.move_to_project(new_project_name=runs_project)
    return runs_project
