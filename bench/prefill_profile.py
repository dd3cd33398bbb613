"""Where the hf backend's prefill time goes: one `slm eval` in this process with torch's profiler on the
prefill passes only. Prints real and padded prompt tokens, the prefill wall time, its split by operator
class (linear layers' matmuls, attention, element-wise ops, the rest) and the matmuls' own FLOP rate
against a 2048^3 matmul at the same precision: the prefill's share of that peak is at most the matmuls'
own share, and falls by the time attention and element-wise ops take.

Run: .venv/bin/python bench/prefill_profile.py [--mode oracle_context|no_context] [--questions N] [override ...]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_eval import WORKLOADS, matmul_peak  # noqa: E402

CLASSES = {"matmul": ("aten::mm", "aten::addmm", "aten::bmm"), "attention": ("scaled_dot_product", "flash_attention"),
           "element-wise": ("aten::mul", "aten::add", "aten::silu", "aten::pow", "aten::mean", "aten::rsqrt",
                            "aten::neg", "aten::cat", "aten::copy_", "aten::_to_copy", "aten::where", "aten::div")}


def op_class(name: str) -> str:
    return next((c for c, keys in CLASSES.items() if any(k in name for k in keys)), "rest")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(WORKLOADS), default="oracle_context")
    parser.add_argument("--questions", type=int, default=0, help="default: 64 closed book, 48 oracle")
    parser.add_argument("overrides", nargs="*", help="slm eval overrides, e.g. model.dtype=float32")
    args = parser.parse_args()
    data, default_n = WORKLOADS[args.mode]
    if not data.is_file():
        print(f"skipped: {data} not found")
        return 0
    import torch
    from torch.profiler import ProfilerActivity, profile

    from components.backends import decoding
    from pipelines.cli import main as slm

    prof = profile(activities=[ProfilerActivity.CPU], record_shapes=True)
    seen = {"seconds": 0.0, "real": 0, "padded": 0, "flop": 0.0}
    prefill, forward = decoding._prefill, decoding._forward

    def counted_forward(model, ids, mask, positions, cache):
        if ids.shape[1] > 1:
            seen["padded"] += ids.numel()
        return forward(model, ids, mask, positions, cache)

    def profiled_prefill(model, rests, *rest, **kwargs):
        prof.toggle_collection_dynamic(True, [ProfilerActivity.CPU])
        start = time.perf_counter()
        out = prefill(model, rests, *rest, **kwargs)
        seen["seconds"] += time.perf_counter() - start
        prof.toggle_collection_dynamic(False, [ProfilerActivity.CPU])
        seen["real"] += sum(len(r) for r in rests)
        return out

    decoding._prefill, decoding._forward = profiled_prefill, counted_forward
    # measured before the eval: after it, with the profiler's threads around, the same matmul reads slower
    peaks = {dtype: matmul_peak(dtype) for dtype in ("bfloat16", "float32")}
    with tempfile.TemporaryDirectory() as out, prof:
        prof.toggle_collection_dynamic(False, [ProfilerActivity.CPU])
        slm(["eval", "--no-clearml", "--no-cache", f"dataset.path={data}", f"experiment.mode={args.mode}",
             f"experiment.max_samples={args.questions or default_n}", f"experiment.output_dir={out}",
             *args.overrides])
        precision = json.loads((Path(out) / "results.json").read_text())["precision"]
    by_class: dict[str, float] = defaultdict(float)
    for event in prof.key_averages(group_by_input_shape=True):
        seconds = event.self_cpu_time_total / 1e6
        by_class[op_class(event.key)] += seconds
        if op_class(event.key) == "matmul" and event.input_shapes and len(event.input_shapes[0]) == 2:
            (m, k), n = event.input_shapes[0], event.input_shapes[1][-1]
            seen["flop"] += 2 * m * k * n * event.count
    profiled = sum(by_class.values())
    peak = peaks.get(precision, 0.0)
    print(f"prefill, {args.mode}, {precision}, {torch.get_num_threads()} threads: {seen['seconds']:.2f} s wall for "
          f"{seen['real']} prompt tokens past the shared head ({seen['padded']} padded, "
          f"{seen['padded'] / max(seen['real'], 1) - 1:.0%} padding)")
    for name in ("matmul", "attention", "element-wise", "rest"):
        print(f"  {name:13s} {by_class[name]:6.2f} s  {by_class[name] / profiled:5.1%} of profiled op time")
    if by_class["matmul"] and peak:
        rate = seen["flop"] / by_class["matmul"]
        print(f"matmuls: {rate / 1e9:.0f} GFLOP/s = {rate / peak:.0%} of a 2048^3 matmul ({peak / 1e9:.0f} GFLOP/s), "
              "the most the prefill could reach if nothing else took time; over all profiled op time: "
              f"{rate / peak * by_class['matmul'] / profiled:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
