"""Every setting of a stage: its default (the typed config's, the only one), the value the
offline default's YAML gives it, and its one-line help.

``python -m emit_iad.config_help grpo`` (or ``sft``, ``qa``, ``model.pretrain`` …; no argument:
the sections). ``--env gpu`` shows what conf/gpu sets instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from emit_iad.params import help_texts
from emit_iad.stage_params import (
    CONFIG_CLASSES,
    NESTED,
    class_defaults,
    config_class,
    effective,
    plain,
    section_defaults,
)

defaults = class_defaults  # each field's default value (factories called)


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


def sections() -> list[str]:
    """Every section and nested block with a typed config of its own."""
    return sorted({*CONFIG_CLASSES, *NESTED})


def _effective_parent(section: str, conf: Path, env: str) -> dict | None:
    """The effective settings of a nested block's section in conf/base + conf/<env>."""
    if "." not in section:
        return None
    top = section.split(".", 1)[0]
    merged = {**yaml_section(conf / "base", top)}
    if env != "base":
        merged.update(yaml_section(conf / env, top))
    return effective({top: merged}).get(top)


def rows(section: str, conf: str | Path = "conf", env: str = "base") -> list[dict]:
    """One row per setting: name, default (a nested block's with what its section gives it),
    the value ``conf/<env>`` sets (or ...), help."""
    conf = Path(conf)
    cls = config_class(section)
    set_here = yaml_section(conf / env, section)
    values = section_defaults(section, _effective_parent(section, conf, env))
    texts = help_texts(cls)
    return [{"setting": name, "default": value, "set": set_here.get(name, ...),
             "help": texts[name]} for name, value in values.items()]  # fmt: skip


def restated(conf: str | Path = "conf", env: str = "base") -> list[str]:
    """Keys of conf/<env> that only repeat their typed default. In conf/base every such key is
    one (a default lives in the typed config only); in another environment a key may repeat
    the default where conf/base changes it (the environment undoes the offline value)."""
    problems = []
    for section in sections():
        base = yaml_section(Path(conf) / "base", section)
        for r in rows(section, conf, env):
            if r["set"] is ... or plain(r["set"]) != plain(r["default"]):
                continue
            if env != "base" and r["setting"] in base and plain(base[r["setting"]]) != plain(
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
    parser.add_argument("section", nargs="?", choices=sections())
    parser.add_argument("--env", default="base", help="conf folder whose values to mark")
    args = parser.parse_args(argv)
    if args.section is None:
        print("sections: " + ", ".join(sections()))
        return
    print(render(args.section, env=args.env))


if __name__ == "__main__":
    main()
