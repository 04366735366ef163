"""Experiment configurations: frozen dataclasses, presets, and command-line flags derived from them.

An experiment configuration is a dataclass whose fields are *sections*, each itself a dataclass of plain
settings (``int``, ``float``, ``str``, ``bool``, or ``... | None``)::

    @dataclass(frozen=True)
    class Experiment:
        data: BowDataConfig = BowDataConfig()
        model: NVDMConfig = NVDMConfig()
        train: TrainConfig = TrainConfig()

Setting names are unique across sections, so a configuration flattens to one ``{name: value}`` dict
(:func:`to_flat`), which is what presets, checkpoints and result files hold, and every setting gets one
flag, ``--name-with-dashes``, whose help text is the setting's entry in the section's docstring
(:func:`add_flags`). Precedence: dataclass defaults < preset < flags given on the command line
(:func:`from_args`).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "ConfigError",
    "check_settings",
    "to_flat",
    "from_flat",
    "changed_settings",
    "add_flags",
    "from_args",
    "describe",
]

C = TypeVar("C")


class ConfigError(ValueError):
    """A setting outside its range; the message names the setting's flag."""


def check_settings(section: Any, **rules: tuple[Callable[[Any], bool], str]) -> None:
    """Raise :class:`ConfigError` for the first setting of ``section`` that breaks its rule,
    ``name=(predicate, "what it must be")``, so that a bad flag stops a command before any work."""
    for name, (valid, must_be) in rules.items():
        value = getattr(section, name)
        if not valid(value):
            raise ConfigError(f"--{name.replace('_', '-')} must be {must_be}, got {value!r}")


def _sections(cls: type) -> list[tuple[str, type]]:
    hints = typing.get_type_hints(cls)
    sections = [(f.name, hints[f.name]) for f in dataclasses.fields(cls)]
    for name, section in sections:
        if not dataclasses.is_dataclass(section):
            raise TypeError(f"{cls.__name__}.{name} is not a dataclass section")
    return sections


def _settings(cls: type) -> dict[str, tuple[str, Any]]:
    """``{setting: (section, type)}`` over all sections; checks that names are unique."""
    out: dict[str, tuple[str, Any]] = {}
    for section, section_cls in _sections(cls):
        for name, kind in typing.get_type_hints(section_cls).items():
            if name in out:
                raise TypeError(f"setting {name!r} appears in sections {out[name][0]!r} and {section!r}")
            out[name] = (section, kind)
    return out


def to_flat(config: Any) -> dict[str, Any]:
    """``{setting: value}`` over all sections of an experiment configuration."""
    return {
        k: v
        for section in dataclasses.fields(config)
        for k, v in dataclasses.asdict(getattr(config, section.name)).items()
    }


def from_flat(cls: type[C], flat: dict[str, Any]) -> C:
    """Build an experiment configuration from defaults overridden by ``flat``; unknown names raise."""
    settings = _settings(cls)
    unknown = sorted(set(flat) - set(settings))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; known: {sorted(settings)}")
    by_section: dict[str, dict[str, Any]] = {}
    for name, value in flat.items():
        by_section.setdefault(settings[name][0], {})[name] = value
    return cls(**{section: section_cls(**by_section.get(section, {})) for section, section_cls in _sections(cls)})


def changed_settings(cls: type, stored: dict[str, Any], current: dict[str, Any]) -> set[str]:
    """The settings in which ``current`` differs from ``stored``, the flat configuration of an earlier run.

    A setting added to ``cls`` after that run is compared at its default: new settings default to the
    behaviour that came before them, so that is the value the run had.
    """
    defaults = to_flat(cls())
    keys = stored.keys() | current.keys()
    return {k for k in keys if stored.get(k, defaults.get(k)) != current.get(k, defaults.get(k))}


def _attribute_docs(cls: type) -> dict[str, str]:
    """Descriptions of the ``Attributes`` section of a numpy-style class docstring."""
    doc = cls.__doc__ or ""
    match = re.search(r"Attributes\n\s*-+\n(.*)", doc, re.S)
    if not match:
        return {}
    out: dict[str, str] = {}
    current = None
    for line in match.group(1).splitlines():
        header = re.match(r"\s{0,8}(\w+) : ", line)
        if header and not line.startswith(" " * 8):
            current = header.group(1)
            out[current] = ""
        elif current and line.strip():
            out[current] = (out[current] + " " + line.strip().replace("``", "")).strip()
    return out


def _parser_type(kind: Any) -> tuple[Any, tuple[Any, ...] | None]:
    """The argparse ``type`` and ``choices`` of an annotation: the type itself, the inner type of
    ``X | None``, or the values' type and the values of a ``Literal``."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        inner = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"unsupported setting type {kind}")
        return _parser_type(inner[0])
    if typing.get_origin(kind) is typing.Literal:
        values = typing.get_args(kind)
        return type(values[0]), values
    return kind, None


def add_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one ``--flag`` per setting, grouped by section. Flags not given stay out of the namespace."""
    for section, section_cls in _sections(cls):
        group = parser.add_argument_group(section)
        docs = _attribute_docs(section_cls)
        defaults = {f.name: f.default for f in dataclasses.fields(section_cls)}
        for name, kind in typing.get_type_hints(section_cls).items():
            flag = "--" + name.replace("_", "-")
            help_text = f"{docs.get(name, '')} (default: {defaults[name]!r})".strip()
            if kind is bool:
                group.add_argument(
                    flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text
                )
            else:
                parser_type, choices = _parser_type(kind)
                group.add_argument(
                    flag,
                    type=parser_type,
                    choices=choices,
                    default=argparse.SUPPRESS,
                    metavar="{" + ",".join(map(str, choices)) + "}" if choices else name.upper(),
                    help=help_text,
                )


def from_args(cls: type[C], args: argparse.Namespace, preset: dict[str, Any] | None = None) -> C:
    """Defaults, then ``preset``, then the flags present in ``args`` (other attributes of ``args`` are ignored)."""
    settings = _settings(cls)
    flat = dict(preset or {})
    flat.update({k: v for k, v in vars(args).items() if k in settings})
    return from_flat(cls, flat)


def describe(config: Any) -> str:
    """One line per section, ``section: name=value ...``, for logs."""
    lines = []
    for section in dataclasses.fields(config):
        values = dataclasses.asdict(getattr(config, section.name))
        lines.append(f"{section.name}: " + " ".join(f"{k}={v}" for k, v in values.items()))
    return "\n".join(lines)
