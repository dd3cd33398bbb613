"""The stage registry: what each stage is, written once. The DAG, the local runner, the ClearML tracker,
template registration, the PipelineController, sweeps and the CLI all read it, and none of them names a
stage: a stage's place in the DAG is declared here as data (its *shape*), never coded into the wiring.

A stage's name is its one word everywhere: `components/stages/<name>.py` (the work),
`clearml_tasks/<name>.py` (the template entry), the CLI verb `slm <name>`, the DAG node and the ClearML
task name. Adding a stage = one entry here + its component + its entry file; a stage whose place is not a
straight line declares its shape:
- `fan_out`     one step per value of a config list (Airflow's `.expand()`): eval over experiment.modes;
- `shards`      split into shard steps joined by another stage: eval -> merge;
- `gathers`     one step over the final step of every variant of another stage (a `.collect()`): report;
- `after`       extra variants once another stage's step exists, reading the model it registered: the
                tuned-model evals after finetune;
- `identity`    what besides its config names its output (ingest: the dataset file's size and mtime);
- `only_in_run` only in a multi-step run (report); `cli=False`: no `slm <name>` verb (merge).
What the fleet needs per stage also lives here: `gpu` (whether a step of it wants a GPU queue).

Plain data, no heavy imports: `slm --help` reads it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from components.analysis.metrics import BENCHMARK_QUALITY_METRICS, QA_METRICS
from components.core.coercion import field_types
from components.core.config import DAG, AppConfig, section_types
from components.core.config_help import field_only
from components.core.outputs import CHECKPOINT_DIR


_ESTIMATES = "components.fleet.memory_estimate"
ENERGY = ("gpu_energy_joules", "gpu_mean_power_watts")  # absent without a GPU (components.core.energy)


def _retrieval(cfg: AppConfig) -> bool:
    return cfg.experiment.mode == "retriever_context"


def _adapter_base(cfg: AppConfig) -> dict:
    """A QLoRA adapter was trained on the 4-bit base: the tuned evals load that base, as the benchmark does."""
    return {"model.load_in_4bit": True} if cfg.finetune.method == "qlora" else {}


def _dataset_identity(cfg: AppConfig) -> str:
    """A local dataset file's size and mtime, so editing the data invalidates the step that read it."""
    path = Path(cfg.dataset.path)
    if path.is_file():
        stat = path.stat()
        return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    return cfg.dataset.path


@dataclass(frozen=True)
class FanOut:
    """One step per distinct value of the list `over`, each with `field` set to its value and named
    `<stage>_<value>`. A stage's own CLI verb runs one variant: the config's own `field`, written into the
    output folder itself."""
    field: str  # section.field set on each step (experiment.mode)
    over: str  # section.field holding the list (experiment.modes)


@dataclass(frozen=True)
class Shards:
    """`count` > 1 splits a step into shard steps (`field` = 0 .. count-1, named `<step>__shard-<i>of<n>`)
    joined by a step of the `joiner` stage under the step's own name, holding its final outputs."""
    count: str  # section.field: how many shards (experiment.shards)
    field: str  # section.field: which shard a step runs (experiment.shard)
    joiner: str  # the stage that joins them (merge); its input is named after this stage


@dataclass(frozen=True)
class After:
    """Once a step of stage `stage` exists (and the boolean `enabled_by` holds), add one more variant of
    this stage per fan-out value, named `<this>_<label>_<value>`, with `model_field` set to the model that
    step registered (`${<step>.models.output.-1.id}`; locally its model folder)."""
    stage: str  # finetune
    enabled_by: str  # section.field (experiment.eval_tuned)
    label: str  # tuned
    model_field: str  # model.adapter
    # More settings the variant takes from the run's config (a QLoRA adapter runs on its 4-bit base).
    overrides: Callable[[AppConfig], dict] | None = None


@dataclass(frozen=True)
class Stage:
    name: str
    task_type: str  # ClearML Task.TaskTypes value
    sections: tuple[str, ...]  # config sections it reads: its parameter sections and its cache key
    inputs: tuple[str, ...] = ()  # parent stages whose output it reads; the input is named after the parent
    # A section or input the stage reads only when the predicate holds for its config (eval reads the
    # retriever and the index only in retriever_context): left out of its cache key and overrides otherwise.
    only_when: dict[str, Callable[[AppConfig], bool]] = field(default_factory=dict)
    cache_ignored: dict[str, tuple[str, ...]] = field(default_factory=dict)  # connected, cannot change output
    upload_exclude: tuple[str, ...] = ()  # left out of the `output` artifact children fetch
    many: tuple[str, ...] = ()  # inputs that take several parents' outputs (a comma-separated list of refs)
    metrics: tuple[str, ...] = ()  # numeric results reported as single values (Summary/<metric>)
    help: str = ""
    cli: bool = True  # `slm <name>` runs the stage and its upstream
    entry: str = ""  # module of the template entry; default clearml_tasks.<name>
    # Its shape in the DAG (see the module docstring); a straight-line stage sets none of these.
    fan_out: FanOut | None = None
    shards: Shards | None = None
    gathers: str = ""  # the stage whose final steps are its input (named after that stage)
    after: After | None = None
    identity: Callable[[AppConfig], str] | None = None
    only_in_run: bool = False
    closing: str = ""  # a results key naming a text file the CLI prints at the end of a run (the leaderboard)
    # The fleet: whether its steps want a GPU queue (the model stages; the rest go to the CPU queue), and
    # "module:function" estimating a step's GPU memory from its config (components.fleet.memory_estimate).
    gpu: bool = False
    memory: str = ""
    # The template a researcher clones: inputs it builds itself when left empty (from its own copy of that
    # stage's sections), the parameters to edit first, and what a run leaves (its description in the UI).
    builds: tuple[str, ...] = ()
    edit_first: tuple[str, ...] = ()
    produces: str = ""

    def memory_estimate(self, cfg: AppConfig):
        """A step's MemoryEstimate (None for a stage without GPU work); imports the estimator on use."""
        if not self.gpu:
            return None
        import importlib

        module, _, name = self.memory.partition(":")
        return getattr(importlib.import_module(module), name)(cfg)

    @property
    def entry_module(self) -> str:
        return self.entry or f"clearml_tasks.{self.name}"

    @property
    def script(self) -> str:
        """What an agent runs, relative to the repository root."""
        return self.entry_module.replace(".", "/") + ".py"

    @property
    def template_sections(self) -> tuple[str, ...]:
        """The sections its template shows: its own, and those of every stage it builds (eval: `dataset`, to
        ingest its data itself when `inputs/ingest` is empty)."""
        built = (s for parent in self.builds for s in STAGES[parent].template_sections)
        return tuple(dict.fromkeys((*self.sections, *built)))

    def template_fields(self, section: str) -> list[str]:
        """The fields of `section` its template shows and its task connects: not those only the DAG reads
        (experiment.modes, shards, ...) nor those only another stage's own task reads (dataset.publish on
        eval, retriever.top_k on index)."""
        cls = section_types()[section]
        return [f for f in field_types(cls) if field_only(cls, f) in ("", self.name)]

    @property
    def step_fields(self) -> tuple[str, ...]:
        """`section.field` the DAG sets on some steps of this stage beyond the template's (a shard's number
        and count): connected where a step carries them."""
        return (self.shards.count, self.shards.field) if self.shards else ()

    def template_keys(self) -> list[str]:
        """`section/field` of every parameter its template shows, then `inputs/<parent>`."""
        return [f"{s}/{f}" for s in self.template_sections for f in self.template_fields(s)] + [
            f"inputs/{name}" for name in self.inputs]

    def run_name(self, cfg: AppConfig) -> str:
        """What a run of this stage is called in the UI: the stage, its fan-out value (an eval's mode), the
        model and the dataset it ran on (`eval · oracle_context · smollm2_135m · demo`)."""
        parts = [self.name]
        if self.fan_out:
            parts.append(str(cfg.value(self.fan_out.field)))
        from components.core.presets import dataset_label, model_label

        if "model" in self.template_sections:
            parts.append(cfg.model.name or model_label(cfg.model))
        return " · ".join(parts + [cfg.dataset.name or dataset_label(cfg.dataset)])

    def reads(self, part: str, cfg: AppConfig) -> bool:
        """Whether this stage, under `cfg`, reads a section or input it lists."""
        return part in (*self.sections, *self.inputs) and self.only_when.get(part, lambda _: True)(cfg)

    def needed_inputs(self, cfg: AppConfig) -> tuple[str, ...]:
        return tuple(i for i in self.inputs if self.reads(i, cfg))

    def cache_config(self, cfg: AppConfig) -> dict[str, dict]:
        """The config its output depends on: the sections it reads, less the fields that cannot change it and
        those only another stage reads (eval does not read retriever.hit_ks, the index's)."""
        data, types = cfg.to_dict(), section_types()
        return {s: {k: v for k, v in data[s].items() if k not in self.cache_ignored.get(s, ())
                    and field_only(types[s], k) in ("", DAG, self.name)}
                for s in self.sections if self.reads(s, cfg)}


STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("ingest", "data_processing", ("dataset",), identity=_dataset_identity,
          edit_first=("dataset.path", "dataset.test_fraction"),
          produces="questions, passages, train and test (jsonl artifacts, first rows previewed) and the counts "
                   "(Ingest table); on a server also a ClearML Dataset version of the normalised data",
          help="load a QA dataset, normalise it, split train/test"),
    Stage("index", "data_processing", ("retriever",), inputs=("ingest",),
          cache_ignored={"retriever": ("top_k",)}, builds=("ingest",),
          edit_first=("retriever.kind", "dataset.path"),
          produces="the index (output artifact), its size and gold/answer hit@k (SCALARS, Final Metrics table)",
          help="build a BM25 / dense / hybrid index over the passages, with its size and hit@k"),
    Stage("eval", "testing", ("experiment", "model", "retriever", "prompt", "generation"),
          inputs=("ingest", "index"), only_when={"retriever": _retrieval, "index": _retrieval},
          cache_ignored={"experiment": ("name", "modes", "output_dir", "eval_tuned")},
          metrics=(*QA_METRICS, "num_examples", "context_has_answer_rate", "share_hit_max_new_tokens",
                   "duration_seconds", "seconds_per_question", "generated_tokens_per_second", "cpu_ram_used_mb",
                   "gpu_ram_peak_mb", *ENERGY),
          fan_out=FanOut("experiment.mode", "experiment.modes"),
          shards=Shards("experiment.shards", "experiment.shard", joiner="merge"),
          after=After("finetune", "experiment.eval_tuned", "tuned", "model.adapter", overrides=_adapter_base),
          gpu=True, memory=f"{_ESTIMATES}:eval_memory", builds=("ingest", "index"),
          edit_first=("experiment.mode", "experiment.max_samples", "model.path", "dataset.path"),
          produces="token recall, F1, exact match with 95% CIs, speed and memory (SCALARS, Final Metrics table); "
                   "results.json, predictions.jsonl (previewed) and memory_usage.json (ARTIFACTS)",
          help="answer every question in experiment.mode; metrics, predictions, memory"),
    Stage("finetune", "training", ("finetune", "model", "prompt"), inputs=("ingest",),
          # Checkpoints (with optimizer state, ~6x the adapter) only serve resuming on the machine that ran.
          upload_exclude=(CHECKPOINT_DIR,),
          metrics=("eval_loss", "train_loss_last", "train_loss_mean", "tokens_per_second", "samples_per_second",
                   "duration_seconds", *ENERGY), gpu=True, memory=f"{_ESTIMATES}:finetune_memory",
          builds=("ingest",), edit_first=("model.path", "finetune.max_steps", "finetune.learning_rate", "dataset.path"),
          produces="loss and learning-rate curves (SCALARS), the adapter as an output model (MODELS), "
                   "trainer_state.json, results.json and the plots as PNG files (ARTIFACTS)",
          help="LoRA/QLoRA adapter on the train split"),
    Stage("benchmark", "testing", ("benchmark", "model", "prompt"), inputs=("ingest", "finetune"),
          metrics=(*(f"{m}_{which}" for m in BENCHMARK_QUALITY_METRICS for which in ("base", "tuned", "delta")),
                   *ENERGY),
          gpu=True, memory=f"{_ESTIMATES}:benchmark_memory", builds=("ingest", "finetune"),
          edit_first=("model.path", "benchmark.max_samples", "dataset.path"),
          produces="base vs tuned means and deltas (SCALARS, Final Metrics), bars and per-question histograms "
                   "(PLOTS), the Markdown report and predictions (ARTIFACTS)",
          help="base vs fine-tuned model on held-out questions, with plots and a report"),
    # The shards of one eval (experiment.shards > 1) joined: exactly the unsharded eval's outputs.
    Stage("merge", "data_processing", (), inputs=("eval",), many=("eval",), cli=False,
          produces="the eval's outputs, as one unsharded eval's (pipelines add this step; inputs/eval = the "
                   "shard task ids, comma-separated)",
          metrics=(*QA_METRICS, "num_examples", "duration_seconds", "seconds_per_question"),
          help="join the shards of one eval into its predictions and metrics"),
    # The leaderboard over every eval of a run or grid.
    Stage("report", "custom", (), inputs=("eval",), many=("eval",), cli=False, gathers="eval", only_in_run=True,
          produces="the leaderboard (PLOTS table and bars, report.html under DEBUG SAMPLES, csv/json/md "
                   "ARTIFACTS); inputs/eval = the eval task ids, comma-separated",
          closing="leaderboard", help="leaderboard of every eval: CIs, costs, paired differences, plots, HTML"),
)}
STAGE_NAMES: tuple[str, ...] = tuple(STAGES)  # the built-in stages; stage_names() includes any registered later


def stage_names() -> tuple[str, ...]:
    return tuple(STAGES)


def register_stage(spec: Stage) -> None:
    """Add a stage (a plugin, or a test's) at the end of the order; its inputs must be registered already."""
    unknown = [p for p in (*spec.inputs, spec.gathers) if p and p not in STAGES]
    if unknown:
        raise ValueError(f"stage {spec.name}: unknown input stage(s) {', '.join(unknown)}")
    STAGES[spec.name] = spec


def joiners() -> set[str]:
    """Stages that only join another stage's shards (merge): no step of their own in the stage loop."""
    return {s.shards.joiner for s in STAGES.values() if s.shards}


def skippable() -> tuple[str, ...]:
    """What `slm run --skip` may leave out: every stage with an input, less the joiners (they come with the
    sharded stage)."""
    return tuple(n for n, s in STAGES.items() if (s.inputs or s.gathers) and n not in joiners())


def stage(name: str) -> Stage:
    from components.core.errors import UserError, did_you_mean

    if name not in STAGES:
        raise UserError(f"unknown stage {name!r}{did_you_mean(name, STAGES)}; stages: {', '.join(STAGES)}")
    return STAGES[name]


def upstream(name: str) -> tuple[str, ...]:
    """The stage and every stage it reads from, parents first, in registry order."""
    wanted: set[str] = set()

    def visit(n: str) -> None:
        if n not in wanted:
            wanted.add(n)
            for parent in STAGES[n].inputs:
                visit(parent)

    visit(name)
    return tuple(n for n in STAGES if n in wanted)
