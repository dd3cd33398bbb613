"""What was run, from the evals' own provenance stamps: when, at which commit, which models and datasets,
and every setting that differs from the defaults (what `slm run` was told on top of them)."""
from __future__ import annotations

from components.analysis.evals import EvalEntry
from components.core.config import AppConfig

# Bookkeeping: where outputs went and which step this was, not what was run.
BOOKKEEPING = ("experiment.output_dir", "experiment.mode", "experiment.shard")


def flat(config: dict) -> dict[str, object]:
    return {f"{section}.{key}": value for section, fields in config.items() if isinstance(fields, dict)
            for key, value in fields.items()}


def non_default_settings(configs: list[dict]) -> dict[str, list]:
    """`section.field` -> the values the configs give it, for every field where one differs from the
    default; a field whose values differ between configs shows them all."""
    defaults = flat(AppConfig().to_dict())
    found: dict[str, list] = {}
    for config in configs:
        for key, value in flat(config).items():
            if key in BOOKKEEPING or (key in defaults and defaults[key] == value):
                continue
            values = found.setdefault(key, [])
            if value not in values:
                values.append(value)
    # a field at its default in one config and not in another: show the default as one of its values
    for key, values in found.items():
        if key in defaults and any(flat(c).get(key, defaults[key]) == defaults[key] for c in configs):
            values.insert(0, defaults[key])
    return dict(sorted(found.items()))


def run_info(entries: list[EvalEntry]) -> dict:
    metas = [e.results.get("meta", {}) for e in entries]
    dates = sorted(m["date"] for m in metas if m.get("date"))
    datasets: dict[str, dict] = {}
    for e in entries:
        config = e.results.get("meta", {}).get("config", {})
        d = datasets.setdefault(e.results.get("dataset", "?"), {"path": config.get("dataset", {}).get("path", ""),
                                                                "questions": 0})
        d["questions"] = max(d["questions"], e.results.get("num_examples", 0))
    names = {m.get("config", {}).get("experiment", {}).get("name", "") for m in metas} - {""}
    return {"name": ", ".join(sorted(names)) or "report",
            "date_first": dates[0] if dates else "", "date_last": dates[-1] if dates else "",
            "commits": sorted({m.get("git_commit", "") for m in metas} - {""}),
            # one commit can carry several code versions (uncommitted edits, other libraries)
            "code_versions": sorted({m.get("code_version", "") for m in metas} - {""}),
            "versions": metas[0].get("versions", {}) if metas else {},
            "models": sorted({e.results.get("model", "?") + (f" + adapter {e.results['adapter']}"
                                                             if e.results.get("adapter") else "") for e in entries}),
            "datasets": datasets,
            "settings": non_default_settings([m.get("config", {}) for m in metas if m.get("config")])}
