"""Layers import downwards only (pipeline/core/__init__.py): core, stages, pipeline, CLI."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = {"pipeline.cli", "pipeline.run_cli", "detector.cli", "segmenter.cli"}
STAGES = ("detector", "segmenter")


def layer(module: str) -> int:
    """0 core, 1 a stage, 2 the pipeline, 3 the command line."""
    if module in CLI:
        return 3
    if module == "pipeline" or module.startswith("pipeline.core"):
        return 0
    if module.split(".")[0] in STAGES:
        return 1
    return 2


def imports(path: Path) -> set[str]:
    """Every chromoseg module a file imports, at its top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] in ("pipeline", *STAGES)}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def known(name: str) -> str:
    """``name`` cut to the longest prefix that is a module or package of the project."""
    parts = name.split(".")
    while parts:
        path = ROOT.joinpath(*parts)
        if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file():
            return ".".join(parts)
        parts.pop()
    return name


def test_no_layer_imports_a_layer_above_it():
    upward = []
    for package in ("pipeline", *STAGES):
        for path in sorted((ROOT / package).rglob("*.py")):
            mine = module_name(path)
            for imported in sorted({known(name) for name in imports(path)}):
                if layer(imported) > layer(mine):
                    upward.append(f"{mine} (layer {layer(mine)}) imports {imported}")
                if (
                    layer(mine) == 1 == layer(imported)
                    and imported.split(".")[0] != mine.split(".")[0]
                ):
                    upward.append(f"{mine} imports the other stage's {imported}")
    assert not upward, "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path):
    file = tmp_path / "probe.py"
    file.write_text("def f():\n    from pipeline.stitch import Instance\n")
    assert {known(name) for name in imports(file)} == {"pipeline.stitch"}
    assert layer("pipeline.stitch") > layer("segmenter.metrics") > layer("pipeline.core.adir")
