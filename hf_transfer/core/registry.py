"""Named registries: recipes pick components by name, never by Python import path."""

from __future__ import annotations

import difflib
from typing import Generic, TypeVar

from hf_transfer.core.errors import RecipeError

T = TypeVar("T")


def closest(name: str, choices) -> str:
    """`" (did you mean 'x'?)"` for the nearest of `choices`, or an empty string."""
    match = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


class Registry(Generic[T]):
    """A name -> object table filled at import time with `@registry.register("name")`."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str):
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str, field: str | None = None) -> T:
        if name not in self._items:
            where = f"{field}: " if field else ""
            raise RecipeError(
                f"{where}unknown {self.kind} '{name}'{closest(name, self._items)}; "
                f"choose one of {', '.join(sorted(self._items))}."
            )
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def values(self) -> list[T]:
        """The registered objects in the order they were registered."""
        return list(self._items.values())

    def __contains__(self, name: str) -> bool:
        return name in self._items
