"""The package's layout: one folder per layer, imports only downward, one home for the export format."""
import ast
import io
import shutil
import subprocess
import sys
import tokenize
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "videoldm"
LINT = Path(sys.executable).parent / "lint-imports"


def lint(package_parent: Path) -> subprocess.CompletedProcess:
    """import-linter's contracts of pyproject.toml on the package found under ``package_parent``."""
    env = {"PYTHONPATH": str(package_parent), "PATH": "/usr/bin:/bin"}
    return subprocess.run([str(LINT), "--config", str(ROOT / "pyproject.toml"), "--no-cache"], env=env,
                          capture_output=True, text=True, timeout=120)


def test_every_import_points_down_the_layers():
    done = lint(ROOT / "src")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout


def test_an_inference_module_that_imports_training_breaks_the_contract(tmp_path):
    copy = tmp_path / "videoldm"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("shipped", "__pycache__"))
    pipeline = copy / "inference" / "pipeline.py"
    pipeline.write_text(pipeline.read_text() + "\nfrom ..training.stages import STAGES  # noqa\n")
    done = lint(tmp_path)
    assert done.returncode != 0
    assert "0 kept, 1 broken" in done.stdout
    assert "videoldm.inference.pipeline -> videoldm.training.stages" in done.stdout


def _function_body_imports(path: Path) -> list[str]:
    """The project modules ``path`` imports inside a function (relative imports resolved to a dotted name)."""
    tree = ast.parse(path.read_text())
    found = []
    for func in ast.walk(tree):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("videoldm")):
                found.append(f"{path.relative_to(PACKAGE)}: {'.' * node.level}{node.module or ''}")
            elif isinstance(node, ast.Import):
                found += [f"{path.relative_to(PACKAGE)}: {a.name}" for a in node.names if a.name.startswith("videoldm")]
    return found


def test_only_the_commands_import_the_project_inside_functions():
    """A function-body import hides a dependency from the layer check; the commands use them so that
    ``videoldm --help`` does not load torch, the rest of the package has no reason to."""
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) if "commands" not in path.parts
             for hit in _function_body_imports(path)]
    assert found == [], found


def test_the_export_index_is_named_in_one_module():
    """``videoldm.json`` is read and written by ``videoldm.export`` only: no other module spells the name."""
    spelled = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
        if any(t.type == tokenize.STRING and t.string.strip("\"'") == "videoldm.json" for t in tokens):
            spelled.append(str(path.relative_to(PACKAGE)))
    assert spelled == ["export.py"]


@pytest.mark.parametrize("old, new, name", [("videoldm.pipeline", "videoldm.inference.pipeline", "VideoLDMPipeline"),
                                            ("videoldm.metrics.video", "videoldm.evaluation.metrics.video", "as_videos"),
                                            ("videoldm.generate", "videoldm.inference.shipped", "text_video")])
def test_import_paths_of_earlier_versions_give_the_moved_module_and_say_where(old, new, name):
    import importlib

    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert module is importlib.import_module(new) and hasattr(module, name)
    assert any(f"{old} has moved to {new}" in str(w.message) for w in caught)


def test_the_public_classes_import_from_the_package():
    import videoldm
    from videoldm.inference.pipeline import VideoLDMPipeline
    from videoldm.models.video_unet import VideoUNet

    assert videoldm.VideoLDMPipeline is VideoLDMPipeline and videoldm.VideoUNet is VideoUNet
    assert set(videoldm.__all__) <= set(dir(videoldm))
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        videoldm.Nothing
