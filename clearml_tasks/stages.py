"""The stage registry: what each stage is, written once. The DAG, the local runner, the ClearML tracker,
template registration, the PipelineController, sweeps and the CLI all read it.

A stage's name is its one word everywhere: `components/<name>.py` (the work), `clearml_tasks/<name>.py`
(the template entry), the CLI verb `slm <name>`, the DAG node and the ClearML task name. Adding a stage
= one entry here + its component + its entry file.

Plain data, no heavy imports: `slm --help` reads it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from components.core.config import AppConfig
from components.analysis.metrics import BENCHMARK_QUALITY_METRICS, QA_METRICS
from components.core.outputs import CHECKPOINT_DIR


def _retrieval(cfg: AppConfig) -> bool:
    return cfg.experiment.mode == "retriever_context"


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

    @property
    def entry_module(self) -> str:
        return self.entry or f"clearml_tasks.{self.name}"

    @property
    def script(self) -> str:
        """What an agent runs, relative to the repository root."""
        return self.entry_module.replace(".", "/") + ".py"

    def reads(self, part: str, cfg: AppConfig) -> bool:
        """Whether this stage, under `cfg`, reads a section or input it lists."""
        return part in (*self.sections, *self.inputs) and self.only_when.get(part, lambda _: True)(cfg)

    def needed_inputs(self, cfg: AppConfig) -> tuple[str, ...]:
        return tuple(i for i in self.inputs if self.reads(i, cfg))

    def cache_config(self, cfg: AppConfig) -> dict[str, dict]:
        """The config its output depends on: the sections it reads, less the fields that cannot change it."""
        data = cfg.to_dict()
        return {s: {k: v for k, v in data[s].items() if k not in self.cache_ignored.get(s, ())}
                for s in self.sections if self.reads(s, cfg)}


STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("ingest", "data_processing", ("dataset",),
          metrics=(), help="load a QA dataset, normalise it, split train/test"),
    Stage("index", "data_processing", ("retriever",), inputs=("ingest",),
          cache_ignored={"retriever": ("top_k",)},
          help="build a BM25 / dense / hybrid index over the passages, with its size and hit@k"),
    Stage("eval", "testing", ("experiment", "model", "retriever", "prompt", "generation"),
          inputs=("ingest", "index"), only_when={"retriever": _retrieval, "index": _retrieval},
          cache_ignored={"experiment": ("name", "modes", "output_dir")},
          metrics=(*QA_METRICS, "context_has_answer_rate", "share_hit_max_new_tokens", "duration_seconds",
                   "seconds_per_question", "generated_tokens_per_second", "cpu_ram_used_mb", "gpu_ram_peak_mb"),
          help="answer every question in experiment.mode; metrics, predictions, memory"),
    Stage("finetune", "training", ("finetune", "model", "prompt"), inputs=("ingest",),
          # Checkpoints (with optimizer state, ~6x the adapter) only serve resuming on the machine that ran.
          upload_exclude=(CHECKPOINT_DIR,),
          metrics=("eval_loss", "train_loss_last", "train_loss_mean", "tokens_per_second", "samples_per_second",
                   "duration_seconds"),
          help="LoRA/QLoRA adapter on the train split"),
    Stage("benchmark", "testing", ("benchmark", "model", "prompt"), inputs=("ingest", "finetune"),
          metrics=tuple(f"{m}_{which}" for m in BENCHMARK_QUALITY_METRICS for which in ("base", "tuned", "delta")),
          help="base vs fine-tuned model on held-out questions, with plots and a report"),
    # The shards of one eval (experiment.shards > 1) joined: exactly the unsharded eval's outputs.
    Stage("merge", "data_processing", (), inputs=("eval",), many=("eval",), cli=False,
          metrics=(*QA_METRICS, "duration_seconds", "seconds_per_question"),
          help="join the shards of one eval into its predictions and metrics"),
    # The leaderboard over every eval of a run or grid.
    Stage("report", "custom", (), inputs=("eval",), many=("eval",), cli=False,
          help="leaderboard of every eval: CIs, costs, paired differences, plots, HTML"),
)}
STAGE_NAMES: tuple[str, ...] = tuple(STAGES)


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
