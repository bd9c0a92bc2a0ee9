"""The registry of problem types, by name: a leaf, so that a problem type's messages can name the others."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hf_transfer.core.registry import Registry

if TYPE_CHECKING:
    from hf_transfer.problems.base import ProblemType

PROBLEM_TYPES: Registry[ProblemType] = Registry("problem_type")
"""One instance of each problem type under its `name`, filled by `hf_transfer.problems` in the order recipes list
them (single-label, multi-label, regression)."""
