"""The merge stage: the shards of one eval (components.stages.eval with `experiment.shard`) joined into the eval
they split. Each shard ran whole batches of the same fixed batch plan, so the merged predictions are
exactly the unsharded run's, and every metric (CIs included) is recomputed from them.

Output folder: the eval's files (predictions.jsonl, results.json, memory_usage.json), results.json last.
"""
from __future__ import annotations

from pathlib import Path

from components.core.errors import UserError
from components.analysis.qa_summary import summarize
from components.core.fileio import read_json, read_jsonl, write_json, write_jsonl
from components.core.outputs import MEMORY_FILE, PREDICTIONS_FILE, RESULTS_FILE, clear_outputs

# Carried from the shards unchanged: they describe the model, the data and the index, not the shard.
SHARED_KEYS = ("model", "dataset", "backend", "backend_version", "precision", "model_size_bytes", "model_size_mb",
               "retriever_index_size_bytes", "retriever_index_size_mb")
PEAK_KEYS = ("cpu_ram_used_mb", "gpu_ram_used_mb", "gpu_ram_peak_mb", "reserved_gpu_ram_mb")


def _read_shard(folder: Path) -> tuple[dict, list[dict]]:
    if not (Path(folder) / RESULTS_FILE).is_file():
        raise UserError(f"{folder}: no {RESULTS_FILE} (the shard did not finish)")
    results = read_json(Path(folder) / RESULTS_FILE)
    if "shard" not in results:
        raise UserError(f"{folder}: not an eval shard (its results have no shard number)")
    return results, read_jsonl(Path(folder) / PREDICTIONS_FILE)


def _check_shards(shards: list[tuple[dict, list[dict]]]) -> None:
    first = shards[0][0]
    numbers = sorted(r["shard"] for r, _ in shards)
    if numbers != list(range(first["shards"])):
        raise UserError(f"shards {numbers} do not cover 0..{first['shards'] - 1} exactly once")
    for results, _ in shards[1:]:
        # backend, precision: with generation.backend=auto / model.dtype=auto, agents of different kinds may
        # resolve them differently
        for key in ("plan", "question_ids", "mode", "backend", "backend_version", "precision"):
            if results.get(key) != first.get(key):
                raise UserError(f"shard {results['shard']} differs from shard {first['shard']} in {key}: they "
                                "come from different eval settings and cannot be merged")


def merge_shards(shard_dirs: list[Path], output_dir: Path) -> dict:
    """Merge the shard folders of one eval into `output_dir`; returns the merged results."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    clear_outputs(output_dir, (RESULTS_FILE, PREDICTIONS_FILE, MEMORY_FILE))
    if not shard_dirs:
        raise UserError("merge: no shard folders given")
    shards = [_read_shard(d) for d in shard_dirs]
    _check_shards(shards)
    first = shards[0][0]
    by_id = {row["id"]: row for _, rows in shards for row in rows}
    missing = [qid for qid in first["question_ids"] if qid not in by_id]
    if missing or len(by_id) != len(first["question_ids"]):
        raise UserError(f"the shards' predictions do not cover the eval's questions (missing {missing[:3]})")
    rows = [by_id[qid] for qid in first["question_ids"]]
    config = first["meta"]["config"]
    results = summarize(rows, first["mode"], config["experiment"]["bootstrap_samples"])
    generation = sum(r["generation_seconds"] for r, _ in shards)
    results.update({key: first[key] for key in SHARED_KEYS if key in first})
    results.update({key: max(r[key] for r, _ in shards) for key in PEAK_KEYS})
    # the largest shard's own peak; "process" when any shard could only give its process's peak
    results["cpu_ram_scope"] = "step" if all(r.get("cpu_ram_scope") == "step" for r, _ in shards) else "process"
    results.update(
        duration_seconds=max(r["duration_seconds"] for r, _ in shards),  # wall time with the shards in parallel
        shard_seconds_total=round(sum(r["duration_seconds"] for r, _ in shards), 3),
        generation_seconds=round(generation, 3), seconds_per_question=round(generation / len(rows), 4),
        generated_tokens_per_second=round(sum(r["new_tokens"] for r in rows) / generation, 2) if generation else 0.0,
        num_batches=first["num_batches"], resumed_batches=sum(r["resumed_batches"] for r, _ in shards),
        shards=first["shards"],
        meta={**first["meta"], "config": {**config, "experiment": {**config["experiment"], "shard": -1}}})
    if all("gpu_energy_joules" in r for r, _ in shards):  # the energy of all shards, each on its own GPU
        joules = sum(r["gpu_energy_joules"] for r, _ in shards)
        results.update(gpu_energy_joules=round(joules, 3),
                       gpu_mean_power_watts=round(sum(r["gpu_mean_power_watts"] for r, _ in shards), 3))
    memory = [read_json(Path(d) / MEMORY_FILE) for d in shard_dirs]
    write_jsonl(output_dir / PREDICTIONS_FILE, rows)
    write_json(output_dir / MEMORY_FILE, {
        "detailed_log": [{**entry, "shard": r["shard"]} for (r, _), m in zip(shards, memory)
                         for entry in m["detailed_log"]],
        "peak_usage": {key: max(m["peak_usage"][key] for m in memory) for key in PEAK_KEYS}})
    write_json(output_dir / RESULTS_FILE, results)  # last: its presence means the step completed
    return results
