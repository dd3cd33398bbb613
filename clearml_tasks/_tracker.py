"""Tracking injected, not branched: a ClearML tracker and a no-op one with the same methods."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from clearml_tasks._delivery import RESEND_ROUNDS, Sent, describe, missing, patiently
from components.core.formatting import format_results, numeric_metrics
from components.core.presentation import file_preview, metrics_table, summary_values


class NullTracker:
    """`--no-clearml`: the stage still prints its results; nothing is sent anywhere."""

    session_dir: Path | None = None
    task_id: str = ""
    online: bool = False  # a live server holds the task (models and datasets can be registered)

    def connect_section(self, values: dict, name: str) -> dict:
        return values

    def report_results(self, results: dict, title: str = "Final Metrics") -> None:
        print(format_results(results, title))

    def report_scalar(self, title: str, series: str, value: float, iteration: int) -> None:
        pass

    def report_image(self, title: str, path: Path) -> None:
        pass

    def report_table(self, title: str, series: str, table: list[list]) -> None:
        pass

    def report_plot(self, title: str, series: str, figure: dict) -> None:
        """An interactive plot (a plotly figure as a dict: components.analysis.figures) in PLOTS."""

    def parameter_keys(self) -> set[str]:
        """`section/field` of the parameters the task already carries (an agent's clone: what was set on it)."""
        return set()

    def record_section(self, name: str, values: dict) -> None:
        """Set a connected section's values on the task (what the run really used), descriptions kept."""

    def leave_templates(self, name: str) -> None:
        """A clone of a template run by an agent becomes a run: named `name`, untagged, in the runs project."""

    def report_media(self, title: str, series: str, path: Path) -> None:
        """A file (e.g. an HTML page) as a debug sample: the web UI shows it in DEBUG SAMPLES."""

    @property
    def task_url(self) -> str:
        """The task's page in the web UI ('' when no server holds it)."""
        return ""

    def pipeline(self) -> "NullTracker | None":
        """A tracker of the pipeline controller task that launched this task (None outside a pipeline)."""
        return None

    def steps(self) -> list[dict]:
        """A controller's step tasks: id, name, status, url; [] for a task that is no controller."""
        return []

    def step_output(self, task_id: str) -> Path | None:
        """A step task's `output` artifact, downloaded; None when it has none."""
        return None

    def register_model(self, name: str, folder: Path, config: dict, tags: list[str], comment: str) -> str:
        """Register a model folder in the model registry; its id ('' when not tracked)."""
        return ""

    def set_properties(self, values: dict) -> None:
        """Record values on the task as user properties (provenance, not parameters to edit)."""

    def upload_artifact(self, name: str, obj: Any, preview: str | None = None) -> None:
        pass

    def keep_progress(self, name: str, path: Path, metadata: dict) -> None:
        """Keep a growing progress file where a later attempt of this task finds it if this one dies (on an
        agent: the task's artifact `name`; locally the file itself stays on disk, so nothing to do)."""

    def restore_progress(self, name: str, path: Path) -> bool:
        """Put the progress file an earlier attempt of this very task kept under `name` at `path`, unless a
        longer one is there already; whether one was restored."""
        return False

    def drop_progress(self, name: str) -> None:
        """The work completed: its progress file is no longer a result of the task."""

    def confirm_delivery(self) -> None:
        """Make sure everything reported reached the server (sending again what did not); raises if it never
        does, so the stage fails rather than completing without it."""

    def close(self, error: str = "") -> None:
        """End tracking; `error` (one line) marks the run failed with that reason."""


# Task.init's framework hooks, all off: with them, every torch.save (each Trainer checkpoint, its optimizer
# and rng state) becomes an output model uploaded to the output storage, and every matplotlib figure is
# reported a second time. A stage reports and uploads exactly what it chooses.
FRAMEWORK_HOOKS = ("matplotlib", "tensorflow", "tensorboard", "pytorch", "xgboost", "scikit", "fastai",
                   "lightgbm", "hydra", "joblib", "megengine", "catboost", "gradio", "tfdefines")


class ClearMLTracker(NullTracker):
    single_values: tuple[str, ...] = ()  # the stage's registry metrics: the SCALARS summary, in order
    def __init__(self, project: str, task_name: str, task_type: str, offline: bool, output_uri: str = "",
                 tags: list[str] | None = None, local_run: bool = True, single_values: tuple[str, ...] = ()):
        from clearml import Task

        self.single_values = single_values

        if offline:
            Task.set_offline(True)
        self.task = Task.init(
            project_name=project, task_name=task_name, task_type=task_type,
            reuse_last_task_id=False, output_uri=output_uri or None, tags=tags or None,
            # Repository detection can stall close() for minutes; an agent-run template needs it, a
            # local run does not.
            auto_connect_frameworks={**dict.fromkeys(FRAMEWORK_HOOKS, False), "detect_repository": not local_run},
            # The stage's parameters are its config sections; the `slm` command line (or anything else
            # argparse parsed in this process) is not a parameter of the task.
            auto_connect_arg_parser=False,
            auto_resource_monitoring=not offline)
        if not offline and not self.task.running_locally():
            # An agent running a task again (a retry, or the next attempt after its agent died: the same
            # task id) makes the SDK offset every report by the task's last iteration, single values
            # included, which then are single values no more. A stage reports absolute iterations.
            self.task.set_initial_iteration(0)
        self.logger = self.task.get_logger()
        self.task_id = self.task.id
        self.session_dir = Path(self.task.get_offline_mode_folder()) if offline else None
        self.sent = Sent()  # checked against the server before closing (clearml_tasks._delivery)

    @property
    def online(self) -> bool:
        return self.session_dir is None

    def connect_section(self, values: dict, name: str) -> dict:
        """Register a parameter section; on an agent the values edited in the UI come back."""
        return self.task.connect(dict(values), name=name)

    def report_results(self, results: dict, title: str = "Final Metrics") -> None:
        super().report_results(results, title)  # the console
        metrics = numeric_metrics(results)
        # A few single values, quality first (SCALARS shows them as one row); every metric with its CI,
        # rounded, in the table (PLOTS).
        for name, value in summary_values(metrics, self.single_values).items():
            self.logger.report_single_value(name, value)
            self.sent.single_values[name] = value
        self.report_table(title, "Summary", metrics_table(metrics))

    def report_scalar(self, title: str, series: str, value: float, iteration: int) -> None:
        self.logger.report_scalar(title=title, series=series, value=value, iteration=iteration)
        self.sent.scalars[(title, series, iteration)] = value

    def report_table(self, title: str, series: str, table: list[list]) -> None:
        self.logger.report_table(title=title, series=series, iteration=0, table_plot=table)
        self.sent.tables[(title, series)] = table

    def report_image(self, title: str, path: Path) -> None:
        self.logger.report_image(title=title, series=Path(path).stem, iteration=0, local_path=str(path))

    def report_media(self, title: str, series: str, path: Path) -> None:
        self.logger.report_media(title=title, series=series, iteration=0, local_path=str(path))

    @property
    def task_url(self) -> str:
        return self.task.get_output_log_web_page() if self.online else ""

    def pipeline(self) -> "NullTracker | None":
        if not self.online or not self.task.parent:
            return None
        from clearml import Task

        parent = Task.get_task(task_id=self.task.parent)
        return _ExistingTask(parent) if str(parent.task_type) == "controller" else None

    def report_plot(self, title: str, series: str, figure: dict) -> None:
        self.logger.report_plotly(title=title, series=series, figure=figure, iteration=0)

    def upload_artifact(self, name: str, obj: Any, preview: str | None = None) -> None:
        """A file or folder as an artifact, with a preview the UI shows (its values, first rows or listing)."""
        if preview is None and isinstance(obj, (str, Path)):
            preview = file_preview(obj)
        # The SDK gives an upload 3 quick tries; a file server out of reach for a minute would lose it.
        patiently(lambda: self.task.upload_artifact(name=name, artifact_object=obj, wait_on_upload=True,
                                                    preview=preview or None), f"uploading artifact {name!r}")

    def parameter_keys(self) -> set[str]:
        return set(self.task.get_parameters() or {})

    def record_section(self, name: str, values: dict) -> None:
        import json

        self.task._set_parameters({f"{name}/{k}": json.dumps(v) if isinstance(v, list) else v
                                   for k, v in values.items()}, __update=True)

    def leave_templates(self, name: str) -> None:
        from clearml_tasks._clones import leave_templates

        if self.online:
            leave_templates(self.task, name)

    def set_properties(self, values: dict) -> None:
        self.task.set_user_properties(**{k: str(v) for k, v in values.items()})

    @property
    def on_agent(self) -> bool:
        """An agent runs this task: a dead agent's next attempt runs elsewhere, without this disk."""
        return self.online and not self.task.running_locally()

    def keep_progress(self, name: str, path: Path, metadata: dict) -> None:
        if not self.on_agent:
            return
        try:  # one try: the file is sent again, grown, after the next batch; the work must not wait for it
            self.task.upload_artifact(name=name, artifact_object=Path(path), metadata=metadata, wait_on_upload=True)
        except Exception as e:
            logging.getLogger(__name__).warning("progress %s not uploaded this time (%s)", name, e)

    def restore_progress(self, name: str, path: Path) -> bool:
        artifact = self.task.artifacts.get(name) if self.on_agent else None
        if artifact is None:
            return False
        local = artifact.get_local_copy()  # a folder comes back unpacked
        if not local or not Path(local).exists():
            logging.getLogger(__name__).warning("cannot download %s (%s); starting over", name, artifact.url)
            return False
        local, path = Path(local), Path(path)
        if local.is_dir():  # a checkpoints folder: used unless this disk holds a checkpoint already
            if path.is_dir() and any(p.name.startswith("checkpoint-") for p in path.iterdir()):
                return False
            shutil.copytree(local, path, dirs_exist_ok=True)
            return True
        if _line_count(local) <= _line_count(path):
            return False  # this disk holds as much already (the same agent ran the earlier attempt)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, path)
        return True

    def drop_progress(self, name: str) -> None:
        if not self.on_agent:
            return
        # The SDK sends the list of every artifact this process uploaded with each new upload, so a deleted
        # one would come back with the next (seen with clearml 2.1.12): take it off that list first.
        manager = getattr(self.task, "_artifacts_manager", None)
        uploaded = getattr(manager, "_task_artifact_list", None)
        if isinstance(uploaded, list):
            uploaded[:] = [a for a in uploaded if getattr(a, "key", None) != name]
        self.task.reload()  # the artifacts uploaded in this process are not in its copy of the task
        if name in self.task.artifacts:
            self.task.delete_artifacts([name], raise_on_errors=False, delete_from_storage=True)

    def register_model(self, name: str, folder: Path, config: dict, tags: list[str], comment: str) -> str:
        from clearml_tasks._models import register_output_model

        return register_output_model(self.task, not self.online, name, folder, config, tags, comment)

    def confirm_delivery(self) -> None:
        if not self.online or not self.sent:
            return
        gap = self.sent
        for _ in range(RESEND_ROUNDS):
            self.task.flush(wait_for_uploads=True)
            gap = patiently(lambda: missing(gap, self.task.get_reported_scalars(), self.task.get_reported_single_values(),
                                            self.task.get_reported_plots()), "reading back the reports")
            if not gap:
                return
            print(f"not on the server: {describe(gap)}; sending again", flush=True)
            for (title, series, iteration), value in gap.scalars.items():
                self.logger.report_scalar(title=title, series=series, value=value, iteration=iteration)
            for name, value in gap.single_values.items():
                self.logger.report_single_value(name, value)
            for (title, series), table in gap.tables.items():
                self.logger.report_table(title=title, series=series, iteration=0, table_plot=table)
        raise RuntimeError(f"reports that did not reach the server after {RESEND_ROUNDS} tries: {describe(gap)}")

    def close(self, error: str = "") -> None:
        """`Task.close()` marks a task completed whenever no exception reached sys.excepthook, so a stage
        that failed is marked failed after it, with the reason in its status and its console."""
        if error:
            self.logger.report_text(f"error: {error}", level=logging.ERROR, print_console=False)
        self.task.close()
        if error and not self.session_dir:  # an offline session keeps no status
            self.task.mark_failed(status_reason=error[:250], status_message=error, force=True)


class _ExistingTask(ClearMLTracker):
    """Reporting onto a task this process did not start (the pipeline controller of a step): no Task.init,
    and close() leaves it as it is."""

    def __init__(self, task):
        self.task, self.logger, self.task_id, self.session_dir = task, task.get_logger(), task.id, None
        self.sent = Sent()  # what the report methods record; never read back (this process does not close it)

    def steps(self) -> list[dict]:
        from clearml import Task

        tasks = Task.get_tasks(task_filter={"parent": self.task_id, "search_hidden": True})
        return [{"id": t.id, "name": t.name, "status": str(t.get_status()), "url": t.get_output_log_web_page()}
                for t in tasks]

    def step_output(self, task_id: str) -> Path | None:
        from clearml import Task

        from clearml_tasks._inputs import OUTPUT_ARTIFACT

        artifact = Task.get_task(task_id=task_id).artifacts.get(OUTPUT_ARTIFACT)
        local = artifact.get_local_copy() if artifact is not None else None
        return Path(local) if local else None

    def close(self, error: str = "") -> None:
        pass


def _line_count(path: Path) -> int:
    if not path.is_file():
        return 0
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def make_tracker(tracking: str, project: str, task_name: str, task_type: str, output_uri: str = "",
                 tags: list[str] | None = None, local_run: bool = True,
                 single_values: tuple[str, ...] = ()) -> NullTracker:
    """`tracking` is none, offline or online (clearml_tasks._tracking.resolve_tracking)."""
    if tracking == "none":
        return NullTracker()
    return ClearMLTracker(project, task_name, task_type, offline=tracking == "offline", output_uri=output_uri,
                          tags=tags, local_run=local_run, single_values=single_values)
