"""The package reads as the data flows: a module imports only from its own stage or below.

Bottom to top (docs/architecture.md): the base modules (``errors``, ``io``, ``models``, ``provenance``,
``run``, ``parallel``) -> ``data`` -> ``retrieval`` -> ``reader`` -> ``distill`` -> ``evaluate`` -> ``train``
-> ``analysis`` -> ``api`` -> ``experiment`` -> ``cli``. This test reads every import statement
(including imports inside functions) and fails on one that reaches upwards.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "attnrag"
LAYERS = ["base", "data", "retrieval", "reader", "distill", "evaluate", "train", "analysis", "api",
          "experiment", "cli"]
BASE = {"errors", "io", "models", "options", "provenance", "run", "parallel", "__init__"}


def stage(module: str) -> str:
    """``attnrag.retrieval.index`` -> ``retrieval``; base modules -> ``base``."""
    parts = module.split(".")
    head = parts[1] if len(parts) > 1 else "__init__"
    if head == "__main__":  # ``python -m attnrag``: the command line's own entry point
        return "cli"
    return "base" if head in BASE else head


def imports_of(path: Path) -> list[tuple[int, str]]:
    module = "attnrag." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("attnrag")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("attnrag"):
                if target == "attnrag" or target.count(".") == 0:  # from attnrag import api
                    found += [(node.lineno, f"attnrag.{a.name}") for a in node.names]
                else:
                    found.append((node.lineno, target))
    return found


def test_no_module_imports_from_a_stage_above_it():
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = "attnrag." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        own = LAYERS.index(stage(module))
        for line, target in imports_of(path):
            if LAYERS.index(stage(target)) > own:
                violations.append(f"{path.relative_to(PACKAGE)}:{line} ({stage(module)}) imports {target} "
                                  f"({stage(target)})")
    assert not violations, "upward imports:\n" + "\n".join(violations)


def test_every_stage_is_a_known_layer():
    stages = {stage("attnrag." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts))
              for p in PACKAGE.rglob("*.py")}
    assert stages <= set(LAYERS), sorted(stages - set(LAYERS))
