"""Configs: YAML read into typed dataclasses, by one loader for every stage.

Each stage declares its settings as nested dataclasses whose field defaults are the defaults, in
one place (``pipeline.config.PipelineConfig``, ``detector.config.DetectorConfig``,
``segmenter.config.SegmenterConfig``); the YAML files under ``configs/`` spell the same values out
with comments. ``load`` reads a file over the defaults: an unknown key, a value of the wrong type
or a missing required setting is a ``ConfigError`` that names the setting (``train.lr``). Fields
typed ``Path`` that are relative are taken relative to the config file's folder, so a config
means the same from any working directory. ``to_dict`` gives the plain mapping that model folders
and checkpoints store, and ``parse`` reads it back.

Supported field types: ``bool``, ``int``, ``float`` (an int is accepted), ``str``, ``Path``,
``Literal[...]``, ``X | None``, unions of these, ``list[X]``, ``tuple[X, X]``, ``dict[K, V]``,
nested dataclasses and ``Any`` (taken as it is).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pipeline.core.errors import ConfigError

T = TypeVar("T")


def load(schema: type[T], path: str | Path | None = None, overrides: dict | None = None) -> T:
    """``schema``'s defaults, then the YAML file at ``path`` (None: none), then ``overrides``
    (a nested mapping; its relative paths stay relative to the working directory, as a command
    line's are)."""
    data: object = {}
    base = None
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"cannot read config {path}: {error}") from error
        base = path.resolve().parent
    try:
        config = parse(schema, data, base=base)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}" if path is not None else str(error)) from None
    if overrides:
        config = parse(schema, merged(to_dict(config), overrides))
    return config


def parse(schema: type[T], data: object, where: str = "", base: Path | None = None) -> T:
    """The dataclass ``schema`` from a mapping (missing keys take their defaults); ``where``
    prefixes the setting names in messages; relative ``Path`` fields are joined to ``base``. A
    schema with an ``upgrade(mapping) -> mapping`` static method has its older settings
    rewritten first (configs of models trained before a setting changed)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where.rstrip('.') or 'the config'} must be a mapping of settings")
    upgrade = getattr(schema, "upgrade", None)  # a schema's older spellings, rewritten
    if upgrade is not None:
        data = upgrade(dict(data))
    fields = {field.name: field for field in dataclasses.fields(schema)}
    unknown = [f"{where}{key}" for key in data if key not in fields]
    if unknown:
        raise ConfigError(f"unknown setting {', '.join(unknown)}")
    hints = typing.get_type_hints(schema)
    values = {}
    for name, field in fields.items():
        if name in data:
            values[name] = _value(hints[name], data[name], f"{where}{name}", base)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"setting {where}{name} is missing")
    try:
        return schema(**values)
    except ValueError as error:  # a schema's own check (__post_init__)
        raise ConfigError(f"{where.rstrip('.') or 'config'}: {error}") from None


def to_dict(config) -> dict:
    """A config dataclass as plain YAML/JSON types (paths as strings, tuples as lists)."""
    return _plain(dataclasses.asdict(config))


def merged(base: dict, override: dict) -> dict:
    """``base`` with ``override``'s values, nested mappings merged key by key."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def _plain(value):
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _value(kind, value, key: str, base: Path | None):
    origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in arguments:
            return None
        for option in (a for a in arguments if a is not type(None)):
            try:
                return _value(option, value, key, base)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} is not {_name(kind)}")
    if dataclasses.is_dataclass(kind):
        return parse(kind, value, f"{key}.", base)
    if origin is typing.Literal:
        if value not in arguments:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, arguments))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: {value!r} is not a list")
        if origin is tuple and arguments and arguments[-1] is not Ellipsis:
            if len(value) != len(arguments):
                raise ConfigError(f"{key}: {value!r} is not a list of {len(arguments)} values")
            return tuple(
                _value(item_kind, item, f"{key}[{index}]", base)
                for index, (item_kind, item) in enumerate(zip(arguments, value, strict=True))
            )
        items = [_value(arguments[0], item, f"{key}[{i}]", base) for i, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: {value!r} is not a mapping")
        key_kind, item_kind = arguments
        return {
            _value(key_kind, name, key, base): _value(item_kind, item, f"{key}.{name}", base)
            for name, item in value.items()
        }
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: {value!r} is not true or false")
        return value
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: {value!r} is not a number")
        if kind is int and not float(value).is_integer():
            raise ConfigError(f"{key}: {value!r} is not a whole number")
        return kind(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: {value!r} is not text")
        return value
    if kind is Path:
        if not isinstance(value, str | Path):
            raise ConfigError(f"{key}: {value!r} is not a path")
        path = Path(value).expanduser()
        return base / path if base is not None and not path.is_absolute() else path
    raise TypeError(f"config field {key} has an unsupported type {kind!r}")


def _name(kind) -> str:
    arguments = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return " or ".join(_name(a) for a in arguments)
    if typing.get_origin(kind) is typing.Literal:
        return " or ".join(map(repr, arguments))
    return "none" if kind is type(None) else getattr(kind, "__name__", str(kind))
