"""`slm report --compare A B`: two runs diffed (components.analysis.compare), written as compare.json,
compare.md (every gained and lost question) and a self-contained compare.html."""
from __future__ import annotations

from pathlib import Path

from components.analysis.compare import compare_html, compare_markdown, compare_runs
from components.analysis.evals import EvalEntry
from components.core.errors import UserError
from components.core.fileio import write_json, write_text

FILES = {"json": "compare.json", "md": "compare.md", "html": "compare.html"}


def write_compare(a: list[EvalEntry], b: list[EvalEntry], output_dir: Path, metric: str = "token_recall",
                  samples: int = 1000, names: tuple[str, str] = ("A", "B")) -> tuple[dict, dict[str, Path]]:
    """The diff of run B against run A into `output_dir`; (diff, name -> path)."""
    for name, entries in zip(names, (a, b)):
        if not entries:
            raise UserError(f"{name}: no finished evals to compare")
    diff = compare_runs(a, b, metric, samples, names)
    if not diff["cells"]:
        raise UserError(f"{names[0]} and {names[1]} share no cell (system x mode): nothing to compare "
                        f"(A has {', '.join(diff['only_in_a'])}; B has {', '.join(diff['only_in_b'])})")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": write_json(output_dir / FILES["json"], diff),
             "md": write_text(output_dir / FILES["md"], compare_markdown(diff)),
             "html": write_text(output_dir / FILES["html"], compare_html(diff))}
    return diff, paths
