"""ClearML task templates, one per stage. Each runs as `python clearml_tasks/<stage>.py` on an agent and
in-process under the local runner (`slm run`)."""
