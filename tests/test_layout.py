"""The layout rules of src/qubert (docs/architecture.md): no module imports another module's
underscore names, no module above 700 lines, no function above 80 lines without a comment saying
why, and every name importable before the training/data split still imports."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "qubert"
MAX_MODULE_LINES = 700
MAX_FUNCTION_LINES = 80
LONG_FUNCTION_MARK = "# Long:"  # a comment just above or at the start of a long function saying why


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _module_name(path: Path) -> str:
    if not path.is_relative_to(SRC.parent):
        return ""
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def underscore_imports(path: Path) -> list[str]:
    """``module: name`` for every underscore name ``path`` takes from another qubert module:
    ``from qubert.x import _name`` and ``x._name`` where ``x`` is an imported qubert module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = _module_name(path)
    found, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("qubert") and node.module != own:
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"{node.module}: {alias.name}")
                else:  # `from qubert.quantum import engine`: engine._x is another module's name
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("qubert") and alias.asname:
                    aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases and _private(node.attr):
            found.append(f"{aliases[node.value.id]}: {node.attr}")
    return found


def test_the_checker_finds_underscore_imports(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from qubert.data.hub import _secret\nfrom qubert.quantum import engine as eng\nx = eng._hidden\n")
    assert underscore_imports(bad) == ["qubert.data.hub: _secret", "qubert.quantum.engine: _hidden"]
    good = tmp_path / "good.py"
    good.write_text("from qubert.data.hub import hub_reachable\nfrom qubert.quantum import engine\nx = engine.check_memory\n")
    assert underscore_imports(good) == []


def test_no_module_imports_another_modules_underscore_names():
    found = {str(p.relative_to(SRC)): names for p in _modules() if (names := underscore_imports(p))}
    assert found == {}


def test_no_module_is_above_700_lines():
    long = {str(p.relative_to(SRC)): n for p in _modules() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_functions_above_80_lines_say_why():
    unexplained = []
    for path in _modules():
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                near = lines[max(0, first - 4) : first - 1] + lines[node.lineno : node.body[0].end_lineno + 2]
                if not any(line.strip().startswith(LONG_FUNCTION_MARK) for line in near):
                    unexplained.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}")
    assert unexplained == []


# Every public name importable before issue 21 split training.py and data.py into packages.
NAMES_BEFORE_THE_SPLIT = {
    "qubert.training": [
        "DiskFullError", "RunDirectoryError", "RunMetrics", "TrainingInterrupted", "TrainingConfig", "TrainingConfigError",
        "classification_metrics", "confusion_matrix", "evaluate_model", "head_config_from", "load_model", "predict_texts",
        "run_training", "HEADS", "MAX_LEARNING_RATE", "MAX_LAYERS", "PICKLE_SUFFIXES", "check_no_pickles",
    ],
    "qubert.data": [
        "DataError", "DatasetBundle", "DatasetSpec", "ENV_DATA_DIR", "REGISTRY", "SPLITS", "TextDataset",
        "available_datasets", "load_dataset_bundle", "read_table", "resolve_data_dir", "hub_available", "TEST_FRACTION",
    ],
}


@pytest.mark.parametrize("module", sorted(NAMES_BEFORE_THE_SPLIT))
def test_every_name_from_before_the_split_still_imports(module):
    imported = importlib.import_module(module)
    missing = [name for name in NAMES_BEFORE_THE_SPLIT[module] if not hasattr(imported, name)]
    assert missing == []
    assert set(imported.__all__) <= set(dir(imported))
