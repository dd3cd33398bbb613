"""A researcher's clone of a template, run by an agent, stops looking like a template: the tag and the
marker go, its name says what it ran and it moves to the runs project; the template itself, pipeline
steps and sweep jobs (created without the tag) and plain runs stay as they are."""
from __future__ import annotations

from clearml_tasks._clones import RUNS_PROJECT_PROPERTY, TEMPLATE_PROPERTY, TEMPLATE_TAG, leave_templates
from clearml_tasks.stages import STAGES
from components.core.overrides import build_config


class FakeTask:
    def __init__(self, task_id, tags, properties):
        self.id, self.tags, self.properties = task_id, list(tags), dict(properties)
        self.name, self.project = "Clone Of eval", "slm-experiments/templates"

    def get_tags(self):
        return self.tags

    def set_tags(self, tags):
        self.tags = list(tags)

    def get_user_properties(self):
        return {k: {"value": v} for k, v in self.properties.items()}

    def delete_user_properties(self, *iterables):  # the SDK's form: iterables of {"section", "name"}
        for key in (key for iterable in iterables for key in iterable):
            assert key["section"] == "properties"
            self.properties.pop(key["name"], None)

    def set_name(self, name):
        self.name = name

    def move_to_project(self, new_project_name):
        self.project = new_project_name


def template_properties(template_id="t1"):
    return {TEMPLATE_PROPERTY: template_id, RUNS_PROJECT_PROPERTY: "slm-experiments"}


def test_a_clone_of_a_template_becomes_a_run_named_after_what_it_ran():
    name = STAGES["eval"].run_name(build_config(["experiment.mode=oracle_context", "model.path=Qwen/Qwen3-0.6B"]))
    assert name == "eval · oracle_context · qwen_0.6b · demo"
    clone = FakeTask("c1", ["template", "mine"], template_properties())
    assert leave_templates(clone, name) == "slm-experiments"
    assert (clone.name, clone.project, clone.tags) == (name, "slm-experiments", ["mine"])
    assert TEMPLATE_PROPERTY not in clone.properties


def test_the_template_a_step_and_a_plain_run_are_left_alone():
    for task in (FakeTask("t1", [TEMPLATE_TAG], template_properties("t1")),  # the template itself
                 FakeTask("s1", [], template_properties()),  # a pipeline step: created without the tag
                 FakeTask("r1", ["template"], {})):  # someone's own task that happens to carry the tag
        before = (task.name, task.project, list(task.tags), dict(task.properties))
        assert leave_templates(task, "eval · x") == ""
        assert (task.name, task.project, task.tags, task.properties) == before


def test_every_stage_has_a_run_name():
    cfg = build_config(["model.name=mine"])
    assert {s: STAGES[s].run_name(cfg) for s in ("ingest", "index", "finetune")} == {
        "ingest": "ingest · demo", "index": "index · demo", "finetune": "finetune · mine · demo"}
