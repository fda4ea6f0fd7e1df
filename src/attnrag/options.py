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
           cli: bool = True, flatten: bool = False, omit: tuple[str, ...] = ()) -> Any:
    """A dataclass field with its help text. ``flag`` renames the command-line option (default:
    ``--field-name``); ``cli=False`` keeps a field out of the command line (config files only).

    For a field holding another config: ``flatten`` gives its fields their own flags, without the
    field's name in front (``PaperConfig.train.reader_steps`` is ``--reader-steps``: the experiment
    *composes* the training config instead of re-declaring it); ``omit`` names inner fields (dotted:
    ``teacher.teacher``) that the container sets itself and so are not options of its command."""
    metadata = {"help": help, "cli": cli, **({"flag": flag} if flag else {}),
                **({"flatten": True} if flatten else {}), **({"omit": tuple(omit)} if omit else {})}
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


def option_specs(cls: type, prefix: tuple[str, ...] = (), *, words: tuple[str, ...] | None = None,
                 defaults: Any = None, omit: tuple[str, ...] = ()) -> list[OptionSpec]:
    """The command-line options of config dataclass ``cls``, nested configs flattened.

    A field whose type is itself a config dataclass contributes its own fields as
    ``--<field>-<inner>`` (``--teacher-aggregation``), or as ``--<inner>`` when it is declared with
    ``flatten``; an inner field named like its container keeps the short flag
    (``TrainConfig.teacher.teacher`` is ``--teacher``). A nested field's defaults are those of the
    container's default instance (``PaperConfig.train`` holds the grid's budget, not TrainConfig's).
    Two fields that would get one flag are a programming error, as is a field without help text.
    """
    hints = typing.get_type_hints(cls)
    words = prefix if words is None else words
    out: list[OptionSpec] = []
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata:
            raise TypeError(f"{cls.__name__}.{f.name} has no help text: declare it with attnrag.options.option")
        if not f.metadata.get("cli", True) or f.name in omit:
            continue
        default = getattr(defaults, f.name) if defaults is not None else _default(f)
        kind, _ = _unwrap(hints[f.name])
        if dataclasses.is_dataclass(kind):
            inner_omit = tuple(o.split(".", 1)[1] for o in omit if o.startswith(f.name + "."))
            inner_omit += f.metadata.get("omit", ())
            inner_words = words if f.metadata.get("flatten") else words + (f.name,)
            out += option_specs(kind, prefix + (f.name,), words=inner_words, defaults=default, omit=inner_omit)
            continue
        if kind not in SCALARS and kind is not list:
            raise TypeError(f"{cls.__name__}.{f.name}: type {hints[f.name]} cannot be a command-line option; "
                            "declare it with cli=False")
        path = prefix + (f.name,)
        flag_words = words + (f.name,)
        flag_words = flag_words[:-1] if len(flag_words) > 1 and flag_words[-1] == flag_words[-2] else flag_words
        flag = f.metadata.get("flag") or "--" + "-".join(flag_words).replace("_", "-")
        out.append(OptionSpec(path, flag, kind, default, f.metadata["help"]))
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
