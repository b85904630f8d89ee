"""Checks shared by the typed configs of the stages (one per parameters_<stage>.yml)."""

from __future__ import annotations

import difflib
import types
import typing


class ParamError(ValueError):
    """An unknown or wrongly typed setting; ``keys`` names the settings, ``problem`` says what
    is wrong without saying where (the run's check adds the file that set it)."""

    def __init__(self, message: str, keys: typing.Sequence[str] = (), problem: str = ""):
        super().__init__(message)
        self.keys, self.problem = tuple(keys), problem or message


def nearest(word: str, choices: typing.Iterable[str]) -> str | None:
    """The choice closest to ``word`` (difflib), or None when none is close."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def suggest(word: str, choices: typing.Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the nearest choice, else ``""``.

    >>> suggest("lrr", ["lr", "epochs"])
    " (did you mean 'lr'?)"
    >>> suggest("zzz", ["lr"])
    ''
    """
    close = nearest(word, choices)
    return f" (did you mean {close!r}?)" if close else ""


def reject_unknown(config_cls: type, params: dict, where: str) -> None:
    """Raise for keys the dataclass ``config_cls`` does not have (naming the file, the nearest
    valid key and all valid keys: a typo must not be silently ignored) and for values of the
    wrong type (:func:`check_types`).

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class C:
    ...     lr: float = 1.0
    >>> reject_unknown(C, {"lr": 2.0}, "x.yml")
    >>> reject_unknown(C, {"lrr": 2.0}, "x.yml")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    emit_iad.params.ParamError: unknown setting(s) ['lrr'] (did you mean 'lr'?) in x.yml; ...
    """
    known = set(config_cls.__dataclass_fields__)
    unknown = sorted(set(params) - known)
    if unknown:
        hint = "".join(suggest(k, known) for k in unknown)
        problem = f"unknown setting(s) {unknown}{hint}"
        raise ParamError(f"{problem} in {where}; valid: {sorted(known)}", unknown,
                         f"{problem}; valid: {sorted(known)}")  # fmt: skip
    check_types(config_cls, params, where)


_SIMPLE = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
           tuple: "a list", list: "a list", dict: "a mapping"}  # fmt: skip


def _accepts(hint, value) -> bool | None:
    """Whether ``value`` fits the annotation ``hint``; None when the hint is not checked."""
    origin = typing.get_origin(hint) or hint
    if origin in (typing.Union, types.UnionType):
        verdicts = [_accepts(a, value) for a in typing.get_args(hint)]
        if any(v is None for v in verdicts):
            return None
        return any(verdicts)
    if hint is type(None):
        return value is None
    if origin not in _SIMPLE:
        return None
    if origin is bool:
        return isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if origin in (tuple, list):
        return isinstance(value, list | tuple)
    return isinstance(value, origin)


def _describe(hint) -> str:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        text = " or ".join(_describe(a) for a in args)
        return text + (" or null" if type(None) in typing.get_args(hint) else "")
    return _SIMPLE.get(typing.get_origin(hint) or hint, str(hint))


def check_types(config_cls: type, params: dict, where: str) -> None:
    """Raise for a value whose type the field's annotation rules out (``lr: abc``,
    ``group_size: eight``), naming the setting, the value and the type expected.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class C:
    ...     lr: float = 1.0
    ...     seed: int | None = None
    >>> check_types(C, {"lr": 1, "seed": None}, "x.yml")
    >>> check_types(C, {"lr": "abc"}, "x.yml")
    Traceback (most recent call last):
    emit_iad.params.ParamError: lr: 'abc' is not a number (x.yml)
    """
    try:
        hints = typing.get_type_hints(config_cls)
    except (NameError, TypeError):  # an annotation that cannot be resolved: not checked
        return
    for key, value in params.items():
        if key in hints and _accepts(hints[key], value) is False:
            problem = f"{value!r} is not {_describe(hints[key])}"
            raise ParamError(f"{key}: {problem} ({where})", [key], problem)


def choice(key: str, value, choices, where: str) -> None:
    """Refuse ``value`` of ``key`` unless it is one of ``choices`` (``where``: the file)."""
    if value not in choices:
        problem = f"{value!r} is not one of {list(choices)}"
        raise ParamError(f"{key}: {problem} ({where})", [key], problem)


def setting(default=None, help: str = "", *, factory=None):
    """A typed-config field with its one-line help, as TRL's ``GRPOConfig`` declares them: the
    field's default lives here and nowhere else (the YAML lists only what it changes).

    >>> from dataclasses import dataclass, fields
    >>> @dataclass
    ... class C:
    ...     lr: float = setting(1e-5, "learning rate")
    >>> C().lr, fields(C)[0].metadata["help"]
    (1e-05, 'learning rate')
    """
    import dataclasses

    meta = {"help": help}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def required(help: str):
    """A typed-config field without a default (the YAML must set it), with its help."""
    import dataclasses

    return dataclasses.field(metadata={"help": help})


def help_texts(config_cls: type) -> dict[str, str]:
    """Each field of a typed config and its help text ('' where it has none)."""
    import dataclasses

    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(config_cls)}
