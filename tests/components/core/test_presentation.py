"""Results as a browser shows them: 4 significant digits, quality first, a CI beside its metric, and a
preview of each uploaded file (its values, its first rows, a folder's listing)."""
from __future__ import annotations

import json

from components.core.presentation import file_preview, metrics_table, sig4, summary_values


def test_numbers_read_to_four_significant_digits():
    assert [sig4(v) for v in (0.7619047619047619, 0.29000000000000004, 1234.5678, 2e-05, 42, True, "x")] == [
        "0.7619", "0.29", "1235", "2e-05", "42", "True", "x"]


def test_the_table_puts_quality_first_and_each_ci_beside_its_metric():
    metrics = {"num_examples": 40, "token_f1": 0.41234, "token_f1_ci_low": 0.3, "token_f1_ci_high": 0.52,
               "model_size_mb": 98.1, "token_recall": 0.5}
    assert metrics_table(metrics) == [["metric", "value", "95% CI low", "95% CI high"],
                                      ["token_f1", "0.4123", "0.3", "0.52"], ["token_recall", "0.5", "", ""],
                                      ["model_size_mb", "98.1", "", ""], ["num_examples", "40", "", ""]]
    assert list(summary_values(metrics)) == ["token_f1", "token_recall", "model_size_mb", "num_examples"]
    assert list(summary_values(metrics, ("token_recall", "missing", "num_examples"))) == ["token_recall",
                                                                                          "num_examples"]


def test_previews_show_values_first_rows_and_listings(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"token_recall": 0.7619047619, "mode": "no_context",
                                                       "meta": {"config": {}}, "plots": ["a.png"]}))
    assert file_preview(tmp_path / "results.json") == ('token_recall: 0.7619\nmode: no_context\nmeta: {"config": {}}\n'
                                                       'plots: 1 items')
    (tmp_path / "memory.json").write_text(json.dumps({"peak_usage": {"cpu_ram_used_mb": 1300, "log": "x" * 300}}))
    preview = file_preview(tmp_path / "memory.json")
    assert preview.startswith('peak_usage: {"cpu_ram_used_mb": 1300') and preview.endswith(" ...")
    assert len(preview) == len("peak_usage: ") + 160 + 4
    rows = [json.dumps({"id": i, "prediction": "x" * 500}) for i in range(8)]
    (tmp_path / "predictions.jsonl").write_text("\n".join(rows) + "\n")
    preview = file_preview(tmp_path / "predictions.jsonl").splitlines()
    assert preview[0] == "first 5 of 8 lines:" and len(preview) == 6
    assert preview[1].startswith('{"id": 0,') and preview[1].endswith(" ...") and len(preview[1]) == 404
    (tmp_path / "plot.png").write_bytes(b"\x89PNG")
    assert file_preview(tmp_path / "plot.png") == ""  # an image: ClearML's own preview
    assert file_preview(tmp_path / "missing.json") == ""
    listing = file_preview(tmp_path).splitlines()
    assert listing[0] == "4 files" and listing[2].startswith("plot.png  (4 bytes)")
