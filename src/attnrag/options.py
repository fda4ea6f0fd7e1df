"""Options documented once: a config dataclass field carries its own help text.

Every configuration dataclass (``TrainConfig``, ``TeacherConfig``, ``PromptConfig``, ``PaperConfig``)
declares its fields with :func:`option`, as transformers' ``TrainingArguments`` does
with ``field(metadata={"help": ...})``. The command line (:mod:`attnrag.cli`) is generated from
:func:`option_specs`, so an option's name, type, default and help exist in one place, and a new
field is on the command line the moment it is added.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import MISSING, dataclass
from typing import Any

# option types the command line can take; lists and tuples of strings are given comma-separated
SCALARS = (str, int, float, bool)


def option(default: Any = MISSING, *, help: str, default_factory: Any = MISSING, flag: str | None = None,
           cli: bool = True) -> Any:
    """A dataclass field with its help text. ``flag`` renames the command-line option (default:
    ``--field-name``); ``cli=False`` keeps a field out of the command line (config files only)."""
    metadata = {"help": help, "cli": cli, **({"flag": flag} if flag else {})}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class OptionSpec:
    """One command-line option generated from a config field.

    ``path`` is where the value goes in the config's dict: ``("tau_gold",)`` or, for a field of a
    nested config, ``("teacher", "aggregation")``; ``kind`` is the scalar type (``list`` for a
    comma-separated list of names).
    """

    path: tuple[str, ...]
    flag: str
    kind: type
    default: Any
    help: str

    @property
    def name(self) -> str:
        """The Python parameter name of the option (``teacher_aggregation``)."""
        return self.flag.lstrip("-").replace("-", "_")


def _unwrap(hint: Any) -> tuple[type | None, bool]:
    """``int | None`` -> ``(int, True)``; ``tuple[str, ...]`` -> ``(list, False)``; a dataclass -> itself."""
    optional = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        hint = args[0] if len(args) == 1 else None
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        return list, optional
    return hint, optional


def _default(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None


def option_specs(cls: type, prefix: tuple[str, ...] = ()) -> list[OptionSpec]:
    """The command-line options of config dataclass ``cls``, nested configs flattened.

    A field whose type is itself a config dataclass contributes its own fields as
    ``--<field>-<inner>`` (``--teacher-aggregation``); an inner field named like its container
    keeps the short flag (``TrainConfig.teacher.teacher`` is ``--teacher``). A field without help
    text is a programming error: the command line would document nothing.
    """
    hints = typing.get_type_hints(cls)
    out: list[OptionSpec] = []
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata:
            raise TypeError(f"{cls.__name__}.{f.name} has no help text: declare it with attnrag.options.option")
        if not f.metadata.get("cli", True):
            continue
        kind, _ = _unwrap(hints[f.name])
        if dataclasses.is_dataclass(kind):
            out += option_specs(kind, prefix + (f.name,))
            continue
        if kind not in SCALARS and kind is not list:
            raise TypeError(f"{cls.__name__}.{f.name}: type {hints[f.name]} cannot be a command-line option; "
                            "declare it with cli=False")
        path = prefix + (f.name,)
        words = path[:-1] if len(path) > 1 and path[-1] == path[-2] else path
        flag = f.metadata.get("flag") or "--" + "-".join(words).replace("_", "-")
        out.append(OptionSpec(path, flag, kind, _default(f), f.metadata["help"]))
    return out if prefix else _check_unique(out, cls)


def _check_unique(specs: list[OptionSpec], cls: type) -> list[OptionSpec]:
    seen: dict[str, OptionSpec] = {}
    for spec in specs:
        if spec.name in seen:
            raise TypeError(f"{cls.__name__}: options {'.'.join(seen[spec.name].path)} and {'.'.join(spec.path)} "
                            f"both become {spec.flag}")
        seen[spec.name] = spec
    return specs


def nest(specs: list[OptionSpec], values: dict[str, Any]) -> dict[str, Any]:
    """Command-line values by parameter name -> the config's (nested) dict, given options only."""
    out: dict[str, Any] = {}
    for spec in specs:
        value = values.get(spec.name)
        if value is None:
            continue
        if spec.kind is list and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        node = out
        for key in spec.path[:-1]:
            node = node.setdefault(key, {})
        node[spec.path[-1]] = value
    return out


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``overrides``, nested dicts merged key by key (a config file, then options)."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


__all__ = ["OptionSpec", "merge", "nest", "option", "option_specs"]
