"""The project's config loader: Kedro's OmegaConfigLoader, with the file named in YAML errors.

Kedro names the file for syntax errors but not for a duplicate key, which PyYAML reports
``in "<file>"``: the loader finds the file and says which key, where, and the fix.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from kedro.config import OmegaConfigLoader
from omegaconf import OmegaConf


class ProjectConfigLoader(OmegaConfigLoader):
    def __getitem__(self, key: str):
        try:
            value = super().__getitem__(key)
        except yaml.MarkedYAMLError as exc:
            raise ValueError(self._locate(key, exc)) from None
        if key == "parameters" and isinstance(value, dict):
            from emit_iad.param_rules import nest

            # runtime `evaluation.mmad_json=…` arrives dotted: into its section, which the
            # nodes read whole (`params:evaluation`)
            value = nest(value)
        return value

    def _locate(self, key: str, exc: yaml.MarkedYAMLError) -> str:
        patterns = self.config_patterns.get(key, [])
        folders = [Path(self.conf_source) / e for e in (self.base_env, self.env or
                                                         self.default_run_env) if e]  # fmt: skip
        for folder in folders:
            files = sorted({p for pattern in patterns for p in folder.glob(pattern)
                            if p.suffix in (".yml", ".yaml") and p.is_file()})  # fmt: skip
            for path in files:
                try:
                    OmegaConf.load(path)  # (PyYAML's safe_load accepts duplicate keys)
                except yaml.MarkedYAMLError as found:
                    mark = found.problem_mark
                    where = f"line {mark.line + 1}" if mark is not None else "somewhere"
                    return (f"{path}: {found.problem} ({where}); a key may appear once in a "
                            "mapping: remove or merge the repeated one")  # fmt: skip
        return str(exc)


def environments(conf_root: str | Path) -> list[str]:
    """The Kedro environments of a conf folder: its subfolders but ``base`` and DVC's
    ``resolved``."""
    return sorted(p.name for p in Path(conf_root).iterdir()
                  if p.is_dir() and p.name not in ("base", "resolved"))  # fmt: skip
