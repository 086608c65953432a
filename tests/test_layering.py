"""Dependencies point one way: app -> lm <- training. A model directory is all that travels between them."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "lm": {"flask", "werkzeug", "app", "training", "waitress", "gunicorn"},
    "training": {"flask", "werkzeug", "app", "waitress", "gunicorn"},
    "app": {"training"},
}


def imported_top_level_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_point_one_way(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no Python files"
    offenders = {
        str(f.relative_to(ROOT)): sorted(imported_top_level_names(f) & FORBIDDEN[package]) for f in files
    }
    assert {f: names for f, names in offenders.items() if names} == {}


# Inside training/: the data room stands on the config alone, evaluation on the data room; neither needs the trainer.
ROOMS = {
    "training.data": {"training.config", "training.data"},
    "training.evaluation": {"training.config", "training.data", "training.evaluation"},
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("room", sorted(ROOMS))
def test_training_rooms_import_only_what_they_stand_on(room):
    files = sorted((ROOT / room.replace(".", "/")).rglob("*.py"))
    assert files, f"{room} has no Python files"
    allowed = ROOMS[room]

    def outside(name: str) -> bool:
        return name.startswith("training.") and not any(name == a or name.startswith(a + ".") for a in allowed)

    offenders = {str(f.relative_to(ROOT)): sorted(n for n in imported_modules(f) if outside(n)) for f in files}
    assert {f: names for f, names in offenders.items() if names} == {}


def test_no_pickle_loading_anywhere():
    files = [p for d in ("lm", "training", "app", "bench", "tests") for p in (ROOT / d).rglob("*.py")]
    for path in files + list(ROOT.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "load":
                if getattr(node.func.value, "id", None) == "torch":
                    keywords = {k.arg: getattr(k.value, "value", None) for k in node.keywords}
                    assert keywords.get("weights_only") is True, f"{path}: torch.load without weights_only=True"


def test_the_app_package_and_the_option_definitions_import_without_torch():
    """gunicorn's master reads app.settings (and through it lm.checks) before it forks: it must not start torch."""
    code = "import sys, app, app.settings, lm, lm.checks, lm.options; print(sorted({'torch', 'numpy'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
