"""Errors of the data sources: each names the file, what is wrong and how to fix it."""

from __future__ import annotations

from pathlib import Path

PARAMS_FILE = "conf/base/parameters_ingestion.yml"


class IngestionError(ValueError):
    """A problem with one file or folder of a dataset.

    ``skippable`` problems (a corrupt image, a missing mask …) can be skipped with
    ``ingestion.on_error: skip``; configuration problems cannot.
    """

    def __init__(self, path: str | Path, reason: str, fix: str, *, skippable: bool = True):
        self.path = str(path)
        self.reason = reason
        self.fix = fix
        self.skippable = skippable
        super().__init__(f"{self.path}: {reason}\n  How to fix: {fix}")


def skip_hint() -> str:
    return (
        f"or set `ingestion.on_error: skip` in {PARAMS_FILE} to skip it and list it in the report"
    )
