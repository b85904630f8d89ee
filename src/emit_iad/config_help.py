"""Every setting of a stage: its default (the typed config's, the only one), the value the
offline default's YAML gives it, and its one-line help.

``python -m emit_iad.config_help grpo`` (or ``sft``, ``qa``, ``model.pretrain`` …; no argument:
the sections). ``--env gpu`` shows what conf/gpu sets instead.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import yaml

from emit_iad.params import help_texts
from emit_iad.stage_params import CONFIG_CLASSES, config_class


def defaults(config_cls: type) -> dict:
    """Each field's default value (factories called)."""
    out = {}
    for f in dataclasses.fields(config_cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def yaml_section(folder: str | Path, section: str) -> dict:
    """What the parameter files of one conf folder set in ``section`` (dotted: nested)."""
    out: dict = {}
    for path in sorted(Path(folder).glob("parameters*.yml")):
        data = yaml.safe_load(path.read_text()) or {}
        for part in section.split("."):
            data = data.get(part) if isinstance(data, dict) else None
        if isinstance(data, dict):
            out.update(data)
    return out


def rows(section: str, conf: str | Path = "conf", env: str = "base") -> list[dict]:
    """One row per setting: name, default, the value ``conf/<env>`` sets (or None), help."""
    cls = config_class(section)
    set_here = yaml_section(Path(conf) / env, section)
    return [{"setting": name, "default": value, "set": set_here.get(name, ...),
             "help": help_texts(cls)[name]} for name, value in defaults(cls).items()]  # fmt: skip


def _plain(value):
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def restated(conf: str | Path = "conf", env: str = "base") -> list[str]:
    """Keys of conf/<env> that only repeat their typed default. In conf/base every such key is
    one (a default lives in the typed config only); in another environment a key may repeat
    the default where conf/base changes it (the environment undoes the offline value)."""
    problems = []
    for section in CONFIG_CLASSES:
        base = yaml_section(Path(conf) / "base", section)
        for r in rows(section, conf, env):
            if r["set"] is ... or _plain(r["set"]) != _plain(r["default"]):
                continue
            if env != "base" and r["setting"] in base and _plain(base[r["setting"]]) != _plain(
                    r["default"]):  # fmt: skip
                continue
            problems.append(f"conf/{env}: {section}.{r['setting']}: {r['set']!r} is the "
                            f"default; leave it out")  # fmt: skip
    return problems


def render(section: str, conf: str | Path = "conf", env: str = "base") -> str:
    lines = [f"{section} ({config_class(section).__name__}); `*` marks what conf/{env} sets"]
    for r in rows(section, conf, env):
        mark = "" if r["set"] is ... else f"  * {env}: {r['set']!r}"
        lines.append(f"  {r['setting']} = {r['default']!r}{mark}\n      {r['help']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emit_iad.config_help")
    parser.add_argument("section", nargs="?", choices=sorted(CONFIG_CLASSES))
    parser.add_argument("--env", default="base", help="conf folder whose values to mark")
    args = parser.parse_args(argv)
    if args.section is None:
        print("sections: " + ", ".join(sorted(CONFIG_CLASSES)))
        return
    print(render(args.section, env=args.env))


if __name__ == "__main__":
    main()
