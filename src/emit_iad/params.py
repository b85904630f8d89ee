"""Checks shared by the typed configs of the stages (one per parameters_<stage>.yml)."""

from __future__ import annotations


def reject_unknown(config_cls: type, params: dict, where: str) -> None:
    """Raise for keys the dataclass ``config_cls`` does not have, naming the file and the
    valid keys (a typo must not be silently ignored).

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class C:
    ...     lr: float = 1.0
    >>> reject_unknown(C, {"lr": 2.0}, "x.yml")
    >>> reject_unknown(C, {"lrr": 2.0}, "x.yml")
    Traceback (most recent call last):
    ValueError: unknown setting(s) ['lrr'] in x.yml; valid: ['lr']
    """
    known = set(config_cls.__dataclass_fields__)
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown} in {where}; valid: {sorted(known)}")
