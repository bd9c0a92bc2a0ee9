"""Problem types, found by name: `problem_type("regression")` is the object that decides everything that differs
between single-label classification, multi-label classification and regression (see `base.ProblemType`).

A fourth problem type is one module beside these three and one entry below.
"""

from __future__ import annotations

from hf_transfer.problems.base import ProblemType
from hf_transfer.problems.multi_label import MultiLabel
from hf_transfer.problems.registry import PROBLEM_TYPES
from hf_transfer.problems.regression import Regression
from hf_transfer.problems.single_label import SingleLabel

for _type in (SingleLabel(), MultiLabel(), Regression()):
    PROBLEM_TYPES.register(_type.name)(_type)


def problem_type(name: str, field: str = "problem_type") -> ProblemType:
    """The registered problem type `name`; an unknown name is a RecipeError naming `field` (with a did-you-mean)."""
    return PROBLEM_TYPES.get(name, field)


def problem_type_names() -> tuple[str, ...]:
    """Every registered problem type's name, in the order recipes list them (single-label first: the default)."""
    return tuple(p.name for p in PROBLEM_TYPES.values())


def default_problem_type() -> ProblemType:
    """The problem type of a recipe that names none, and of run folders from before problem types: the first
    registered (single-label)."""
    return PROBLEM_TYPES.values()[0]


def all_metric_names() -> tuple[str, ...]:
    """Every metric some problem type lets `eval.metric` name, single-label's first, each once."""
    return tuple(dict.fromkeys(m for p in PROBLEM_TYPES.values() for m in p.metric_names))


__all__ = [
    "PROBLEM_TYPES",
    "MultiLabel",
    "ProblemType",
    "Regression",
    "SingleLabel",
    "all_metric_names",
    "default_problem_type",
    "problem_type",
    "problem_type_names",
]
