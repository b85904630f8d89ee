"""Installs that reproduce (issue #26, item 8): constraints.txt pins every package pyproject
names at the version the tests passed with, and the setup script (so CI) installs with it."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_every_dependency_is_pinned_but_the_torch_build():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    named = {_name(r) for r in project["dependencies"]}
    named |= {_name(r) for extra in project["optional-dependencies"].values() for r in extra}
    named -= {"emit-iad", "torch", "torchvision"}  # the build: TORCH_SPEC in scripts/setup.sh
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.lower().replace("_", "-")] = version
    assert sorted(named - set(pins)) == []
    assert all(re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", v) for v in pins.values()), pins
    assert "torch" not in pins and not any(n.startswith("nvidia-") for n in pins)


def test_the_setup_script_installs_with_the_constraints():
    setup = (ROOT / "scripts/setup.sh").read_text()
    assert "--constraint constraints.txt" in setup
    assert setup.count('"${pins[@]}"') == 2  # the project and DeepSpeed
    assert "bash scripts/lock.sh" in (ROOT / "constraints.txt").read_text()
