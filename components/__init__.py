"""Stage logic for slm-experiments: plain functions over typed configs and files (no ClearML here)."""
