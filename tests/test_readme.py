"""The README's examples, as a new user runs them in order on a fresh clone: no two ``qubert
train`` commands share a run directory (the second would fail with "already holds a finished
run"), the Python examples bound the data they encode and use only names they define."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def _train_commands() -> list[list[str]]:
    commands = []
    for block in _blocks("bash"):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            for part in line.split("&&"):
                words = shlex.split(part.strip())
                # "--config run.yaml" and "..." are templates, not commands to run as they are
                if words[:2] == ["qubert", "train"] and "..." not in words and "--config" not in words:
                    commands.append(words[2:])
    return commands


def _run_dir(args: list[str]) -> str:
    options = {args[i][2:]: args[i + 1] for i in range(len(args) - 1) if args[i].startswith("--") and not args[i + 1].startswith("--")}
    if "output-dir" in options:
        return options["output-dir"]
    return f"runs/{options['dataset']}-{options.get('head', 'quantum')}-{options.get('mode', 'frozen')}-s{options.get('seed', '42')}"


def test_readme_train_commands_use_distinct_run_directories():
    commands = _train_commands()
    assert len(commands) >= 5
    run_dirs = [_run_dir(args) for args in commands]
    assert len(set(run_dirs)) == len(run_dirs), run_dirs


def test_readme_python_training_example_bounds_its_data_and_has_its_own_run_directory():
    (block,) = [b for b in _blocks("python") if "run_training(" in b]
    call = next(node for node in ast.walk(ast.parse(block)) if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "TrainingConfig")
    keywords = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    assert keywords.get("max_train_samples"), "the example would encode every row of the data set"
    commands = [_run_dir(args) for args in _train_commands()]
    assert keywords.get("output_dir") and keywords["output_dir"] not in commands


def test_readme_python_examples_define_every_name_they_use():
    import builtins

    for block in _blocks("python"):
        tree = ast.parse(block)
        defined = set(dir(builtins))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                defined.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                defined.add(node.id)
        used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
        assert used <= defined, f"undefined in a README example: {sorted(used - defined)}\n{block}"
