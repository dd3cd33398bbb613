"""The report at full NQ-open scale: its size, how long the report step takes, and how long report.html
takes to open in headless Chromium (until its drill-down is ready), with screenshots.

The predictions are synthesised, through the real code: every NQ-open dev question (3,610), the 2,600
distinct gold passages of the 2,655 that have one as the corpus (gold ids matched by question text), the
real BM25 index, and the real eval stage in no_context, oracle_context and retriever_context for two fake
"models" whose answers depend on the prompt (the gold answer when the prompt holds it, on a fixed share of
questions; a few words of the first passage or "unknown" otherwise) -> 6 cells. Then the real report step
(clearml_tasks.report.report). The numbers that matter (size, open time) depend on the number of questions,
cells, passages and answer lengths, not on who answered.

Run from the repository root (needs ../shared/data and Debian's chromium):
  .venv/bin/python bench/bench_report.py [--out /tmp/slm-bench-report] [--repeat 3]
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from browser import Browser  # noqa: E402  (tests/browser.py: Chromium over the DevTools pipe)
from helpers import FakeGenerator, question_of  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "nq_open"


def build_ingest(out: Path) -> int:
    """questions.jsonl (3,610, file order) with gold_passage_ids where the oracle file has the question,
    passages.jsonl (the distinct gold passages)."""
    from components.data.schema import passage_id

    gold: dict[str, list[str]] = {}
    passages: dict[str, dict] = {}
    with gzip.open(DATA / "nq-open-oracle.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            ids = []
            for ctx in row["ctxs"]:
                if ctx.get("isgold"):
                    pid = passage_id(ctx["title"], ctx["text"])
                    passages.setdefault(pid, {"id": pid, "title": ctx["title"], "text": ctx["text"]})
                    ids.append(pid)
            gold[row["question"]] = ids
    questions = []
    with open(DATA / "NQ-open.dev.jsonl", encoding="utf-8") as f:
        for i, line in enumerate(f):
            row = json.loads(line)
            questions.append({"id": f"nq-{i:04d}", "question": row["question"], "answers": row["answer"],
                              "gold_passage_ids": gold.get(row["question"], [])})
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("questions.jsonl", questions), ("passages.jsonl", list(passages.values())),
                       ("train.jsonl", questions[:2888]), ("test.jsonl", questions[2888:])):
        (out / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return sum(1 for q in questions if q["gold_passage_ids"])


def fake_reader(answers: dict[str, list[str]], salt: str, read_share: int, know_share: int):
    """Answers from the prompt: the gold answer when the context shows it (read_share of 10 questions), or
    known closed book (know_share of 10); else a few words of the first passage, or "unknown"."""
    def answer(prompt: str) -> str:
        question = question_of(prompt)
        gold = answers[question][0]
        roll = int(hashlib.sha1(f"{salt}{question}".encode()).hexdigest(), 16) % 10
        context = prompt.split("Question: ")[0]
        if "Context:" in context:
            if gold.lower() in context.lower() and roll < read_share:
                return gold
            words = re.sub(r"\s+", " ", context.split("Context:", 1)[1]).split(" ")
            return " ".join(words[3:9]) if roll % 3 else gold if roll < know_share else "unknown"
        return gold if roll < know_share else "unknown"
    return answer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="/tmp/slm-bench-report")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"needs {DATA}", file=sys.stderr)
        return 2
    from clearml_tasks._tracker import NullTracker
    from clearml_tasks.report import report
    from components.core.config import MODES, RetrieverConfig
    from components.core.overrides import build_config
    from components.stages.eval import run_eval
    from components.stages.index import run_index

    out = Path(args.out)
    with_gold = build_ingest(out / "ingest")
    run_index(RetrieverConfig(), out / "ingest", out / "index")
    answers = {json.loads(line)["question"]: json.loads(line)["answers"]
               for line in (out / "ingest" / "questions.jsonl").read_text().splitlines()}
    evals = []
    started = time.perf_counter()
    for model, read, know in (("fake_reader_a", 7, 2), ("fake_reader_b", 5, 3)):
        cfg = build_config([f"model.name={model}", "dataset.name=nq_open", f"dataset.path={DATA}",
                            "experiment.name=bench_report"])
        for mode in MODES:
            folder = out / f"eval_{mode}__model-{model}"
            run_eval(cfg, mode, out / "ingest", out / "index" if mode == "retriever_context" else None, folder,
                     generator=FakeGenerator(answer=fake_reader(answers, model, read, know)))
            evals.append(folder)
    print(f"6 evals over {len(answers)} questions ({with_gold} with a gold passage): "
          f"{time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    report(evals, out / "report", NullTracker())
    step_seconds = time.perf_counter() - started
    page = out / "report" / "report.html"
    text = page.read_text(encoding="utf-8")
    block = re.search(r'id="drilldown-data">([^<]+)<', text).group(1)
    images = sum(len(m) for m in re.findall(r'data:image/png;base64,([^"]+)"', text))
    print(f"report step: {step_seconds:.1f} s")
    print(f"report.html: {page.stat().st_size:,} bytes ({page.stat().st_size / 2**20:.2f} MiB); drill-down block "
          f"{len(block):,} bytes base64, plots {images:,} bytes base64")
    times = []
    with Browser(width=1400, height=900) as browser:
        for i in range(args.repeat):
            wall = browser.open(page.as_uri(), "document.body && document.body.dataset.ready === '1'")
            times.append((wall, int(browser.eval("document.body.dataset.readyMs"))))
        t0 = time.perf_counter()
        browser.eval("(s => { s.value = 'differ'; s.dispatchEvent(new Event('change')); })"
                     "(document.querySelector('#outcome'))")
        rows = browser.eval("document.querySelector('#qcount').textContent")
        filter_ms = (time.perf_counter() - t0) * 1000
        browser.eval("(s => { s.value = 'all'; s.dispatchEvent(new Event('change')); })"
                     "(document.querySelector('#outcome'))")
        errors, requests = browser.errors(), browser.requests()
        browser.screenshot(out / "report_top.png")
        browser.eval("document.querySelector('#rag-split').scrollIntoView()")
        browser.screenshot(out / "report_split.png")
        browser.eval("document.querySelector('#questions').scrollIntoView()")
        browser.eval("document.querySelectorAll('#qtable tbody tr')[2].click()")
        browser.screenshot(out / "report_questions.png", full_page=False)
        browser.eval("document.querySelector('#detail').scrollIntoView()")
        browser.screenshot(out / "report_detail.png")
    for wall, ready_ms in times:
        print(f"open in Chromium (1400 px): {wall:.2f} s to ready (wall, from navigate); page says {ready_ms} ms")
    print(f"filter 'A and B differ' over {len(answers)} questions: {filter_ms:.0f} ms (with the round trip): {rows}")
    remote = [u for u in requests if not u.startswith(("file:", "data:", "blob:"))]
    print(f"console errors: {len(errors)}; remote requests: {len(remote)}")
    print(f"screenshots: {', '.join(str(out / f'report_{n}.png') for n in ('top', 'split', 'questions', 'detail'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
