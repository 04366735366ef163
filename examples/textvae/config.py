"""Configurations: frozen dataclasses of settings, each with its help text and its rule, and their flags.

A configuration section is a frozen dataclass deriving from :class:`Settings` whose fields are made by
:func:`setting`; an experiment is a dataclass of sections (data, model, train, eval). Setting names are
unique across sections, so an experiment flattens to one ``{name: value}`` dict (:func:`to_flat`), which is
what presets, checkpoints and result files hold, and every setting is one flag ``--name-with-dashes``
(:func:`add_flags`). Precedence: defaults < preset < flags given on the command line (:func:`from_args`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

C = TypeVar("C")
Rule = tuple[Callable[[Any], bool], str]


class ConfigError(ValueError):
    """A setting outside its range; the message names the setting's flag."""


def at_least(low: float) -> Rule:
    """The rule ``low <= value < inf``."""
    return (lambda v: low <= v < math.inf), f">= {low:g}"


POSITIVE: Rule = ((lambda v: 0 < v < math.inf), "a positive number")
PROBABILITY: Rule = ((lambda v: 0 <= v < 1), "in [0, 1)")


def setting(default: Any, help: str, rule: Rule | None = None) -> Any:
    """A field with its help text and an optional rule ``(predicate, "what it must be")``."""
    return dataclasses.field(default=default, metadata={"help": help, "rule": rule})


class Settings:
    """Base of a configuration section: every rule is checked on construction, so that a bad flag stops a
    command before any work."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            rule, value = f.metadata.get("rule"), getattr(self, f.name)
            if rule is not None and not rule[0](value):
                raise ConfigError(f"--{f.name.replace('_', '-')} must be {rule[1]}, got {value!r}")


def _sections(cls: type) -> list[tuple[str, type]]:
    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(cls)]


def to_flat(config: Any) -> dict[str, Any]:
    """``{setting: value}`` over all sections of an experiment configuration."""
    return {k: v for name, _ in _sections(type(config)) for k, v in dataclasses.asdict(getattr(config, name)).items()}


def from_flat(cls: type[C], flat: dict[str, Any]) -> C:
    """An experiment configuration from defaults overridden by ``flat``; unknown names raise."""
    owner = {f.name: section for section, kind in _sections(cls) for f in dataclasses.fields(kind)}
    unknown = sorted(set(flat) - set(owner))
    if unknown:
        raise ConfigError(f"unknown setting(s) {unknown}")
    return cls(
        **{section: kind(**{k: v for k, v in flat.items() if owner[k] == section}) for section, kind in _sections(cls)}
    )


def section(cls: type[C], flat: dict[str, Any]) -> C:
    """The section ``cls`` of a flat configuration (a run's ``result.json`` holds one)."""
    return cls(**{f.name: flat[f.name] for f in dataclasses.fields(cls) if f.name in flat})  # type: ignore[arg-type]


def changed_settings(defaults: dict[str, Any], stored: dict[str, Any], current: dict[str, Any]) -> set[str]:
    """The settings in which ``current`` differs from ``stored``, the flat configuration of an earlier run.
    A setting added after that run is compared at its value in ``defaults``, the behaviour before it."""
    return {
        k for k in stored.keys() | current.keys() if stored.get(k, defaults.get(k)) != current.get(k, defaults.get(k))
    }


def _parser_type(kind: Any) -> tuple[Any, tuple[Any, ...] | None]:
    """argparse ``type`` and ``choices`` of an annotation: ``X``, ``X | None`` or a ``Literal``."""
    if isinstance(kind, types.UnionType):
        (inner,) = [a for a in typing.get_args(kind) if a is not type(None)]
        return _parser_type(inner)
    if typing.get_origin(kind) is typing.Literal:
        values = typing.get_args(kind)
        return type(values[0]), values
    return kind, None


def add_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--flag`` per setting, grouped by section; flags not given stay out of the namespace."""
    for section, kind in _sections(cls):
        group = parser.add_argument_group(section)
        hints = typing.get_type_hints(kind)
        for f in dataclasses.fields(kind):
            flag, help_text = "--" + f.name.replace("_", "-"), f"{f.metadata['help']} (default: {f.default!r})"
            if hints[f.name] is bool:
                group.add_argument(
                    flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text
                )
                continue
            parser_type, choices = _parser_type(hints[f.name])
            metavar = "{" + ",".join(map(str, choices)) + "}" if choices else f.name.upper()
            group.add_argument(
                flag, type=parser_type, choices=choices, default=argparse.SUPPRESS, metavar=metavar, help=help_text
            )


def from_args(cls: type[C], args: argparse.Namespace, preset: dict[str, Any] | None = None) -> C:
    """Defaults, then ``preset``, then the flags present in ``args`` (its other attributes are ignored)."""
    names = set(to_flat(cls()))
    return from_flat(cls, {**(preset or {}), **{k: v for k, v in vars(args).items() if k in names}})
