"""pyproject.toml's lower bounds stay above the releases with published advisories.

``./dev audit`` (pip-audit) needs the online advisory database; this table is the offline
guard CI runs. When an advisory is published, add it here and raise the floor.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

#: package -> (first fixed version, the advisory that version fixes), the newest per package.
FIXED = {
    "starlette": ("1.3.1", "GHSA-82w8-qh3p-5jfq: form limits ignored for urlencoded bodies (DoS)"),
    "h11": ("0.16.0", "GHSA-vqfr-h8mv-ghfj: lenient chunked bodies, request smuggling"),
    "cryptography": ("48.0.1", "GHSA-537c-gmf6-5ccf: vulnerable OpenSSL in the wheels"),
}

PYPROJECT = Path(__file__).parent.parent / "pyproject.toml"


def _requirements() -> dict[str, Requirement]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    listed = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        listed += extra
    return {(req := Requirement(line)).name.lower(): req for line in listed}


def test_every_floor_excludes_the_releases_with_advisories() -> None:
    requirements = _requirements()
    for name, (fixed, advisory) in FIXED.items():
        assert name in requirements, f"{name} needs a direct floor ({advisory})"
        floors = [Version(s.version) for s in requirements[name].specifier if s.operator == ">="]
        assert floors, f"{name} has no >= bound ({advisory})"
        assert max(floors) >= Version(fixed), f"{name}>={fixed} needed: {advisory}"
