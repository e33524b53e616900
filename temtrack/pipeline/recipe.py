"""Recipes: every parameter of an analysis in one serialisable object.

A recipe is what the GUI exports and ``temtrack analyze --recipe FILE`` replays, and what
``results.json`` records as provenance. Recipes are plain dataclasses; JSON and YAML files both load.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, TypeVar

from temtrack.errors import ParameterError

R = TypeVar("R", bound="Recipe")


@dataclasses.dataclass
class Recipe:
    """Base class: subclasses are dataclasses with JSON-friendly fields and a ``validate``."""

    #: Which pipeline the recipe drives ('analyze', 'rings', 'fft'); set by subclasses.
    kind = "recipe"

    def validate(self) -> None:  # overridden where there is something to check
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any], *, source: str = "recipe") -> R:
        data = dict(data)
        kind = data.pop("kind", cls.kind)
        if kind != cls.kind:
            raise ParameterError(f"{source}: a '{kind}' recipe cannot drive '{cls.kind}'")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ParameterError(f"{source}: unknown recipe keys {unknown}; expected some of {sorted(names)}")
        try:
            recipe = cls(**data)
        except TypeError as exc:
            raise ParameterError(f"{source}: {exc}") from None
        recipe.validate()
        return recipe

    @classmethod
    def from_file(cls: type[R], path: str | os.PathLike) -> R:
        return cls.from_dict(read_recipe_mapping(path), source=str(path))

    def replace(self: R, **changes) -> R:
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new


def read_recipe_mapping(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping stored in a JSON or YAML recipe file, with one-line errors for bad files."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ParameterError(f"{path}: cannot read recipe ({exc.strerror or exc})") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - any parse error is the user's file
        first_line = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise ParameterError(f"{path}: not a valid recipe file ({first_line})") from None
    if not isinstance(data, dict):
        raise ParameterError(f"{path}: a recipe file must hold a mapping of parameter names to values")
    return data


def read_json_file(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON object from a file (e.g. a results.json), with one-line errors."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ParameterError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ParameterError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ParameterError(f"{path}: expected a JSON object")
    return data
