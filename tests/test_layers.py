"""The layers of the code: no module imports from a layer above its own.

From the bottom: the producer package (``rttm_emit``); what both flows share (the modules
directly in ``rttm/`` that are not the operator's, ``rttm.core.db``, ``rttm.core.stream``); the two
flows (``rttm.ingest``; ``rttm.metrics`` with ``rttm.alerts``), which never import each
other; the operator's surface (the CLI, the dashboard and its views, the local stack, the
simulator, the supervisor, health probes and metrics ports).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.ingest_helpers import REPO

SHARED, INGEST, METRICS, SURFACE = "shared", "ingestion", "metrics flow", "operator surface"
RANK = {"producer": 0, SHARED: 1, INGEST: 2, METRICS: 2, SURFACE: 3}
#: The layer of each package and module directly under ``rttm``.
LAYER_OF = {
    "core": SHARED,
    "ingest": INGEST,
    "metrics": METRICS,
    "alerts": METRICS,
    **dict.fromkeys(
        (
            "cli",
            "web",
            "views",
            "ops",
            "lag",
            "stack",
            "simulator",
            "__main__",
            "emit",
            "queue_reporter",
        ),
        SURFACE,
    ),
}
#: Imports allowed upwards, each with its reason.
ALLOWED = {
    # Without a named server, the configuration asks the local stack for its address, in
    # the function that needs it: a deployment never imports the stack.
    ("rttm.core.config", "rttm.stack"),
}


def layer(module: str) -> str | None:
    """The layer of an importable name (None: not this project's)."""
    parts = module.split(".")
    if parts[0] == "rttm_emit":
        return "producer"
    if parts[0] != "rttm":
        return None
    return LAYER_OF[parts[1]] if len(parts) > 1 else SHARED


def imports(path: Path) -> set[str]:
    """Every absolute import of the module at ``path``, wherever in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


def modules() -> dict[str, Path]:
    """Every module of ``rttm`` and ``rttm_emit`` by its dotted name."""
    roots = {"rttm": REPO / "rttm", "rttm_emit": REPO / "rttm-emit" / "src" / "rttm_emit"}
    found = {}
    for package, root in roots.items():
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join((package, *parts)).removesuffix(".__init__")] = path
    return found


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    wrong = []
    for module, path in sorted(modules().items()):
        mine = layer(module)
        assert mine is not None, path
        for name in sorted(imports(path)):
            theirs = layer(name)
            if theirs is None or (module, ".".join(name.split(".")[:2])) in ALLOWED:
                continue
            both_flows = RANK[theirs] == RANK[mine] == 2 and theirs != mine
            if RANK[theirs] > RANK[mine] or both_flows:
                wrong.append(f"{module} ({mine}) imports {name} ({theirs})")
    assert wrong == []


def test_the_layers_know_everything_directly_under_rttm() -> None:
    found = {
        p.stem
        for p in (REPO / "rttm").iterdir()
        if p.suffix == ".py" or (p / "__init__.py").exists()
    }
    assert found - {"__init__"} == set(LAYER_OF)
