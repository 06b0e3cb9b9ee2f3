"""pyproject.toml's lower bounds stay above the releases with published advisories.

``./dev audit`` (pip-audit) needs the online advisory database; this table is the offline
guard CI runs. When an advisory is published, add it here and raise the floor.
"""

from __future__ import annotations

import re
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
CONSTRAINTS = PYPROJECT.parent / "constraints.txt"
EMIT = PYPROJECT.parent / "rttm-emit"
#: Built from this repository and installed editable by ./dev: required at its exact
#: version, never pinned in constraints.txt (pip freeze --exclude-editable leaves it out).
LOCAL = {"rttm-emit"}


def _server_dependencies() -> dict[str, Requirement]:
    listed = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    return {(req := Requirement(line)).name.lower(): req for line in listed}


def _emit_dependencies() -> list[Requirement]:
    project = tomllib.loads((EMIT / "pyproject.toml").read_text())["project"]
    return [Requirement(line) for line in project["dependencies"]]


def _requirements() -> dict[str, Requirement]:
    """Every requirement of the server, its extras and groups, and rttm-emit; local ones not."""
    pyproject = tomllib.loads(PYPROJECT.read_text())
    project = pyproject["project"]
    listed = [*project["dependencies"], *map(str, _emit_dependencies())]
    for extra in project["optional-dependencies"].values():
        listed += extra
    for group in pyproject["dependency-groups"].values():
        listed += [line for line in group if isinstance(line, str)]
    requirements = (Requirement(line) for line in listed)
    return {req.name.lower(): req for req in requirements if req.name.lower() not in LOCAL}


def _pins() -> dict[str, Version]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.strip().lower().replace("_", "-")] = Version(version.strip())
    return pins


def test_every_floor_excludes_the_releases_with_advisories() -> None:
    requirements = _requirements()
    for name, (fixed, advisory) in FIXED.items():
        assert name in requirements, f"{name} needs a direct floor ({advisory})"
        floors = [Version(s.version) for s in requirements[name].specifier if s.operator == ">="]
        assert floors, f"{name} has no >= bound ({advisory})"
        assert max(floors) >= Version(fixed), f"{name}>={fixed} needed: {advisory}"


def test_the_pinned_versions_are_above_the_advisories_and_satisfy_pyproject() -> None:
    pins = _pins()
    for name, (fixed, advisory) in FIXED.items():
        assert pins[name] >= Version(fixed), f"{name} pinned below {fixed}: {advisory}"
    for name, requirement in _requirements().items():
        if requirement.marker is None or requirement.marker.evaluate():
            assert name in pins, f"constraints.txt does not pin {name}: run ./dev lock"
            assert requirement.specifier.contains(pins[name], prereleases=True), (
                f"constraints.txt pins {name}=={pins[name]}, outside {requirement}: run ./dev lock"
            )


def test_the_server_requires_the_rttm_emit_of_this_checkout() -> None:
    text = (EMIT / "src" / "rttm_emit" / "__init__.py").read_text()
    found = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    assert found, "rttm_emit/__init__.py writes no __version__"
    required = _server_dependencies()["rttm-emit"]
    assert str(required.specifier) == f"=={found.group(1)}", (
        f"pyproject.toml requires {required}; rttm-emit is {found.group(1)}"
    )


def test_rttm_emit_needs_two_packages_with_the_servers_floors() -> None:
    server = _server_dependencies()
    emit = _emit_dependencies()
    assert sorted(req.name for req in emit) == ["confluent-kafka", "msgspec"]
    for req in emit:
        assert req.specifier == server[req.name].specifier, f"{req} vs {server[req.name]}"
