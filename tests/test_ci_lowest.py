"""The lowest-versions CI job (`.ci/lowest.sh`) names its tests by node id: every file and test it names exists, so
moving or renaming a test cannot silently drop it from that job."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def node_ids(script: Path) -> list[str]:
    """The `tests/...py[::name]` ids a shell script passes to pytest."""
    return re.findall(r"(?<![\w/])tests/[\w/]+\.py(?:::\w+)?", script.read_text())


def defined_names(path: Path) -> set[str]:
    """Names of the module-level test functions (and test classes) in a test file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)}


def test_every_test_the_lowest_versions_job_names_exists():
    ids = node_ids(REPO / ".ci" / "lowest.sh")
    assert len(ids) > 10, ids  # the parse found the list, not a stray mention
    missing = []
    for node_id in ids:
        file, _, name = node_id.partition("::")
        path = REPO / file
        if not path.is_file() or (name and name not in defined_names(path)):
            missing.append(node_id)
    assert not missing, f".ci/lowest.sh names tests that do not exist: {missing}"
