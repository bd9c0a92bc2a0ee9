"""What `pip install` ships: every package of the source tree is listed in pyproject.toml (a wheel built from an
unlisted one would import in a checkout and fail once installed)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_in_the_source_tree_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "hf_transfer").rglob("__init__.py")}
    assert found - listed == set(), f"add to [tool.setuptools] packages in pyproject.toml: {sorted(found - listed)}"
    assert {p for p in listed if not p.startswith(("hf_transfer.recipes", "hf_transfer.model_cards"))} <= found
