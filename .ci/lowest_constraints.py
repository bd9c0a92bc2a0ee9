"""Print a pip constraints file that pins each dependency in pyproject.toml to its declared lower bound.

torch and torchvision are left out: CI keeps the build the machine already has (one multi-GB wheel is enough),
so their declared floor is the release CI installs, and `.ci/lowest.sh` checks that it is.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

KEPT_AS_INSTALLED = {"torch", "torchvision"}
_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^]]*\])?\s*(.*)$")


def floors(pyproject: Path) -> dict[str, str]:
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    out = {}
    for dep in deps:
        name, spec = _REQ.match(dep).groups()
        lower = [s.strip()[2:].strip() for s in spec.split(",") if s.strip().startswith(">=")]
        if len(lower) != 1:
            sys.exit(f"pyproject.toml: dependency '{dep}' needs exactly one '>=' lower bound for the lowest job.")
        out[name] = lower[0]
    return out


def check(declared: dict[str, str]) -> None:
    """Fail unless every dependency is installed at its floor (torch/torchvision: at least their floor)."""
    from importlib.metadata import version as installed_version

    from packaging.version import Version

    wrong = []
    for name, floor in declared.items():
        found = Version(installed_version(name))
        if found < Version(floor) or (name not in KEPT_AS_INSTALLED and found != Version(floor)):
            wrong.append(f"{name} {found} (declared floor {floor})")
    if wrong:
        sys.exit("lowest job: not at the declared floor: " + "; ".join(wrong))


if __name__ == "__main__":
    declared = floors(Path(__file__).resolve().parent.parent / "pyproject.toml")
    if sys.argv[1:] == ["--check"]:
        check(declared)
    else:
        for name, version in declared.items():
            if name not in KEPT_AS_INSTALLED:
                print(f"{name}=={version}")
