"""Input kinds by name: `MODALITIES.get("image")`, or by the task a recipe names (`MODALITIES.of_task(...)`).

Each kind is one object (`hf_transfer.data.modalities.base.Modality`) that owns what differs between text, images
and image + text; a new input kind is one module here, registered below, plus the backbones that read it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hf_transfer.core.errors import RecipeError
from hf_transfer.core.registry import Registry, closest
from hf_transfer.data.modalities.base import Modality
from hf_transfer.data.modalities.image import IMAGE
from hf_transfer.data.modalities.multimodal import MULTIMODAL
from hf_transfer.data.modalities.text import TEXT

if TYPE_CHECKING:
    from hf_transfer.config.recipe import Recipe
    from hf_transfer.runs.record import BackboneRecord


class ModalityRegistry(Registry[Modality]):
    """The input kinds, in the order they were registered (the order messages and `--help` list them in)."""

    def add(self, kind: Modality) -> Modality:
        return self.register(kind.name)(kind)

    def kinds(self) -> list[Modality]:
        return list(self._items.values())

    def tasks(self, with_towers: bool = True) -> tuple[str, ...]:
        """The tasks the input kinds serve; `with_towers=False`: only those one backbone reads (what `rank` scores)."""
        return tuple(kind.task for kind in self.kinds() if with_towers or not kind.towers)

    def of_task(self, task: str, field: str = "task") -> Modality:
        """The input kind that serves `task` (`image-classification`); a RecipeError naming `field` otherwise."""
        for kind in self.kinds():
            if kind.task == task:
                return kind
        raise RecipeError(
            f"{field}: unknown task '{task}'{closest(task, self.tasks())}; choose one of {', '.join(self.tasks())}."
        )

    def check_recipe(self, recipe: Recipe) -> None:
        """A RecipeError for settings that do not fit the recipe's input kind: its own rules, and what only another
        kind takes (towers, one-tower baselines)."""
        kind = self.of_task(recipe.task)
        for other in self.kinds():
            if other is not kind:
                other.refuse_own_settings(recipe)
        kind.check_recipe(recipe)

    def of_record(self, backbone: BackboneRecord) -> Modality:
        """The input kind a run record's backbone names."""
        return self.get(backbone.modality or DEFAULT.name)


DEFAULT = TEXT
"""The input kind of a recipe that names no task, and of a run record from before the kind was recorded."""

MODALITIES = ModalityRegistry("input kind")
MODALITIES.add(TEXT)
MODALITIES.add(IMAGE)
MODALITIES.add(MULTIMODAL)

__all__ = ["DEFAULT", "MODALITIES", "Modality"]
