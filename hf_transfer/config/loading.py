"""Recipes from files: shipped recipes by name, YAML read safely, and `section.key=value` overrides."""

from __future__ import annotations

import copy
import importlib.resources
from pathlib import Path
from typing import Any

import yaml

from hf_transfer.config.recipe import Recipe, recipe_from_dict
from hf_transfer.core.errors import RecipeError
from hf_transfer.core.registry import closest


def recipes_root() -> Path:
    """The folder of shipped recipes, in a source checkout or an installed wheel."""
    try:
        packaged = importlib.resources.files("hf_transfer") / "recipes"
        if packaged.is_dir():
            return Path(str(packaged))
    except (ModuleNotFoundError, FileNotFoundError):
        pass
    return Path(__file__).resolve().parents[2] / "recipes"


def shipped_recipes() -> dict[str, Path]:
    root = recipes_root()
    return {str(p.relative_to(root).with_suffix("")): p for p in sorted(root.rglob("*.yaml"))}


def resolve_recipe_path(name_or_path: str) -> Path:
    """A shipped recipe's name (`sentiment/minilm-lora-rotten-tomatoes`) or a path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise RecipeError(f"recipe file '{name_or_path}' does not exist; `hf-transfer ls` lists shipped recipes.")
        return path
    shipped = shipped_recipes()
    if name_or_path in shipped:
        return shipped[name_or_path]
    raise RecipeError(
        f"no shipped recipe or file named '{name_or_path}'{closest(name_or_path, shipped)}; "
        "`hf-transfer ls` lists the shipped recipes."
    )


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise RecipeError(f"override '{text}' must look like section.key=value (e.g. train.epochs=2).")
    key, _, value = text.partition("=")
    path = [part for part in key.strip().split(".") if part]
    if not path:
        raise RecipeError(f"override '{text}' has no key before '='.")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return path, parsed


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """`raw` with each `a.b.c=value` applied (values parsed as YAML: 2, 1e-4, true, [a.csv, b.csv], null)."""
    raw = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if isinstance(child, str) and part == "strategy":  # `strategy: lora` then `strategy.r=16`
                child = {"name": child}
            if child is None:
                child = {}
            if not isinstance(child, dict):
                raise RecipeError(f"override '{text}': '{'.'.join(path[: i + 1])}' is not a section.")
            node[part] = child
            node = child
        node[path[-1]] = value
    return raw


def read_recipe_yaml(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise RecipeError(
            f"recipe '{path}' is not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}); "
            "save it as UTF-8."
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise RecipeError(f"recipe '{path}'{where} is not valid YAML: {getattr(err, 'problem', err)}.") from None
    except OSError as err:
        raise RecipeError(f"recipe '{path}' cannot be read: {err.strerror}.") from None
    if raw is None:
        raise RecipeError(
            f"recipe '{path}' is empty; start from a shipped one with `hf-transfer cp NAME {path}` "
            "(`hf-transfer ls` lists them)."
        )
    return raw


def load_recipe(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    path = resolve_recipe_path(name_or_path)
    raw = apply_overrides(read_recipe_yaml(path), list(overrides))
    return recipe_from_dict(raw, name=path.stem)
