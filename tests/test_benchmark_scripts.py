"""The benchmark scripts are not run by the suite (they time things), but what they import from the
package must exist: a renamed or moved helper would otherwise break them silently."""
import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).parents[1] / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_name_a_benchmark_imports_from_videoldm_exists(script):
    tree = ast.parse(script.read_text())
    imports = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               and (node.module or "").split(".")[0] == "videoldm"]
    for node in imports:  # module level and inside functions alike
        module = importlib.import_module(node.module)
        for alias in node.names:
            submodule = hasattr(module, "__path__") and importlib.util.find_spec(f"{node.module}.{alias.name}")
            assert hasattr(module, alias.name) or submodule, \
                f"{script.name}:{node.lineno}: {node.module} has no {alias.name}"
