"""DVC stage ``params``: the parameters of the Kedro environment in use, one file per stage.

``python -m emit_iad.dvc_params [folder]`` resolves ``parameters*`` the way a
``kedro run`` in this shell would: conf/base, merged with ``KEDRO_ENV``'s folder (default
``local``). It writes ``<folder>/<stage>.yml`` with each stage's blocks, and each DVC stage
depends on its own file. Edits in conf/gpu, conf/qwen or conf/local, or another
``KEDRO_ENV``, therefore rerun exactly the stages whose settings changed; DVC's own
``params:`` lists see conf/base only. A file is rewritten only when its content changes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

from emit_iad.atomic import atomic_file
from emit_iad.config_args import CONFIG_LOADER_ARGS
from emit_iad.config_loader import ProjectConfigLoader, environments

# the parameter blocks each stage reads (a dotted name: one key of a block)
GUARD = ("evaluation.mmad_json", "evaluation.image_root", "qa.exclude_benchmarks")
STAGE_PARAMS = {
    "ingestion": ("ingestion",),
    "descriptions": ("descriptions",),
    "qa": ("qa", *GUARD[:2]),
    "model": ("model",),
    "sft": ("sft", *GUARD),
    "grpo": ("grpo", *GUARD),
    "evaluation": ("evaluation",),
    "ablation": ("grpo", "evaluation", "ablation", "qa"),  # the guard's keys among them
}
HEADER = ("# Written by `dvc repro` (stage params) from the Kedro environment {env!r}; "
          "do not edit:\n# change conf/base, conf/<env> or conf/local instead.\n")  # fmt: skip


def resolve(conf: str | Path = "conf", env: str | None = None) -> dict:
    loader = ProjectConfigLoader(str(conf), env=env or "local", **CONFIG_LOADER_ARGS)
    return loader["parameters"]


def _get(params: dict, dotted: str):
    for part in dotted.split("."):
        params = params.get(part) if isinstance(params, dict) else None
    return params


def write(folder: str | Path, params: dict, env: str) -> list[str]:
    """Per-stage files; returns the stages whose file changed."""
    folder = Path(folder)
    changed = []
    for stage, keys in STAGE_PARAMS.items():
        text = yaml.safe_dump({k: _get(params, k) for k in keys}, sort_keys=True)
        path = folder / f"{stage}.yml"
        body = HEADER.format(env=env) + text
        if path.is_file() and path.read_text().split("\n", 2)[-1] == body.split("\n", 2)[-1]:
            continue  # same settings (perhaps from another environment): leave it untouched
        with atomic_file(path) as fh:
            fh.write(body)
        changed.append(stage)
    return changed


def main(argv: list[str]) -> None:
    """Every section is checked in full first (typed configs and rules), so a typo in the last
    stage's parameters stops `dvc repro` here, not after the stages before it have run."""
    from emit_iad.params import ParamError
    from emit_iad.stage_params import locator, validate

    folder = argv[0] if argv else "conf/resolved"
    env = os.environ.get("KEDRO_ENV") or "local"
    if env != "local" and not Path("conf", env).is_dir():
        sys.exit(f"KEDRO_ENV={env}: there is no conf/{env}; the environments are "
                 f"{environments('conf')}")
    params = resolve("conf", env)
    try:
        validate(params, locator("conf", env, None))
    except ParamError as exc:
        sys.exit(str(exc))
    changed = write(folder, params, env)
    print(f"parameters of environment {env!r}: changed for {changed or 'no stage'}")


if __name__ == "__main__":
    main(sys.argv[1:])
