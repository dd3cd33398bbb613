"""The report entry's ClearML side: the leaderboard as a table plot and report.html as a debug sample, on
the report task and, as a pipeline step, on the controller task too (with the html as an artifact there);
the pipeline's steps become links and its benchmark results a section; cells link to the tasks that ran
them. Checked on a recording tracker and on a real offline ClearML session."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from clearml_tasks._tracker import NullTracker
from clearml_tasks.report import leaderboard_table, report
from components.core.config import MODES
from components.core.fileio import read_jsonl, write_json
from components.core.overrides import build_config
from components.stages.eval import run_eval
from components.stages.report import PLOT_FILES
from helpers import FakeGenerator, question_of, run_offline_script

TASK_URL = "http://ui.test:8080/projects/p1/experiments/{}/output/log"


@pytest.fixture(scope="module")
def eval_dirs(demo_ingest_dir, demo_index_dir, tmp_path_factory) -> list[Path]:
    """The three modes' evals on 8 demo questions (a fake that knows every other answer), in a run folder
    laid out like `slm run`'s; the retriever eval ran 'on a server' (its folder names its task)."""
    answers = {q["question"]: q["answers"][0] for q in read_jsonl(demo_ingest_dir / "questions.jsonl")}
    order = list(answers)
    fake = FakeGenerator(answer=lambda p: answers[question_of(p)] if order.index(question_of(p)) % 2 else "no idea")
    run = tmp_path_factory.mktemp("run")
    cfg = build_config(["experiment.max_samples=8"])
    dirs = []
    for mode in MODES:
        out = run / f"eval_{mode}"
        run_eval(cfg, mode, demo_ingest_dir, demo_index_dir if mode == "retriever_context" else None, out,
                 generator=fake)
        write_json(out / ".step.json", {"key": "k", "stage": "eval", "results": {}})
        dirs.append(out)
    write_json(dirs[2] / "clearml_task.json", {"id": "rag1", "url": TASK_URL.format("rag1")})
    return dirs


class Recorder(NullTracker):
    def __init__(self, pipeline: "Recorder | None" = None, steps: list[dict] | None = None,
                 outputs: dict[str, Path] | None = None):
        self.calls: list[tuple] = []
        self._pipeline, self._steps, self._outputs = pipeline, steps or [], outputs or {}

    def report_table(self, title, series, table):
        self.calls.append(("table", title, series, table))

    def report_media(self, title, series, path):
        self.calls.append(("media", title, series, Path(path).read_text()))

    def report_image(self, title, path):
        self.calls.append(("image", title, Path(path).name))

    def report_plot(self, title, series, figure):
        self.calls.append(("plot", title, series, figure))

    def upload_artifact(self, name, obj, preview=None):
        self.calls.append(("artifact", name))

    def pipeline(self):
        return self._pipeline

    def steps(self):
        return self._steps

    def step_output(self, task_id):
        return self._outputs.get(task_id)

    def kinds(self) -> list[str]:
        return [c[0] for c in self.calls]


def test_a_pipeline_step_reports_on_its_task_and_on_the_controller(eval_dirs, tmp_path):
    bench = tmp_path / "bench_output"
    summary = {w: {"token_f1": {"mean": v, "ci_low": v, "ci_high": v, "n": 8}}
               for w, v in (("base", 0.138), ("tuned", 0.5), ("delta", 0.362))}
    write_json(bench / "results.json", {"model": "smollm2", "num_examples": 8, "summary": summary})
    steps = [{"id": "b1", "name": "benchmark", "status": "completed", "url": TASK_URL.format("b1")},
             {"id": "i1", "name": "ingest", "status": "completed", "url": TASK_URL.format("i1")}]
    controller = Recorder(steps=steps, outputs={"b1": bench})
    tracker = Recorder(pipeline=controller)
    results = report(eval_dirs, tmp_path / "report", tracker)
    assert results["num_evals"] == 3
    for target in (tracker, controller):
        table = next(c for c in target.calls if c[0] == "table")
        assert table[1:3] == ("Leaderboard", "token_recall")
        assert table[3] == leaderboard_table(json.loads((tmp_path / "report" / "leaderboard.json").read_text()))
        assert table[3][0] == ["system", *MODES] and table[3][1][3].count("[") == 1  # `mean [low, high]`
        media = next(c for c in target.calls if c[0] == "media")
        assert media[1:3] == ("report", "report.html") and 'id="drilldown-data"' in media[3]
    assert ("artifact", "report.html") in controller.calls and "image" not in controller.kinds()
    assert {c[1] for c in tracker.calls if c[0] == "artifact"} == {"leaderboard.csv", "leaderboard.json",
                                                                   "leaderboard.md", "report.html", *PLOT_FILES.values()}
    # the bars interactive in PLOTS (one trace per mode, CI whiskers); the PNGs are artifacts, not images
    (plot,) = [c for c in tracker.calls if c[0] == "plot"]
    assert plot[1] == "Leaderboard" and [t["name"] for t in plot[3]["data"]] == list(MODES)
    assert all("error_y" in t for t in plot[3]["data"]) and "image" not in tracker.kinds()
    page = (tmp_path / "report" / "report.html").read_text()
    assert f'href="{TASK_URL.format("rag1")}"' in page  # the retriever cell links to its task
    assert f'href="{TASK_URL.format("b1")}"' in page and f'href="{TASK_URL.format("i1")}"' in page  # step links
    assert 'id="finetune-benchmark"' in page and "0.362" in page  # the pipeline's benchmark, fetched


def test_outside_a_pipeline_only_the_task_gets_it_and_steps_come_from_the_run_folder(eval_dirs, tmp_path):
    tracker = Recorder()
    report(eval_dirs, tmp_path / "report", tracker)
    assert tracker.kinds().count("table") == 1 and tracker.kinds().count("media") == 1
    page = (tmp_path / "report" / "report.html").read_text()
    # links to the run's step folders, relative to the report (they survive moving the whole run)
    assert f'href="{os.path.relpath(eval_dirs[0], tmp_path / "report")}/"' in page


OFFLINE_REPORT = """
import json, sys
from pathlib import Path
from clearml_tasks._tracking import resolve_tracking
from clearml_tasks._tracker import make_tracker
from clearml_tasks.report import report
tracker = make_tracker(resolve_tracking("offline"), "slm-tests", "report", "custom")
assert tracker.pipeline() is None and tracker.task_url == ""
report([Path(p) for p in sys.argv[2:]], Path("report_out"), tracker)
tracker.close()
json.dump({"session": str(tracker.session_dir)}, open(sys.argv[1], "w"))
"""


def test_a_real_offline_session_holds_the_table_the_page_and_the_files(eval_dirs, tmp_path):
    session = Path(run_offline_script(OFFLINE_REPORT, tmp_path, *map(str, eval_dirs))["session"])
    events = [e for line in (session / "metrics.jsonl").read_text().splitlines() if line.strip()
              for e in json.loads(line)]
    plots = [e for e in events if e.get("type") == "plot"]
    assert [e["metric"] for e in plots] == ["Leaderboard", "Leaderboard"]  # the table and the bars
    assert "token_recall" in json.dumps(plots[0]) and "retriever_context" in json.dumps(plots[0])
    media = [e for e in events if e.get("metric") == "report" and str(e.get("url", "")).endswith(".html")]
    assert len(media) == 1  # the page as a debug sample
    artifacts = {a["key"] for a in json.loads((session / "task.json").read_text())["execution"]["artifacts"]}
    assert {"report.html", "leaderboard.csv", "leaderboard.json", "leaderboard.md"} <= artifacts
