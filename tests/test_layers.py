"""The pipeline flows one way: a stage never imports a later one (README, DESIGN)."""

import ast
import pathlib

import graphtrain

# Lower number = earlier in the pipeline; a module may import its own layer and below.
LAYERS = {
    "errors": 0, "config": 0, "storage": 0, "ray_env": 0, "net": 0, "names": 0, "registry": 0, "seeded_hash": 0,
    "data": 1,
    "graph": 2,
    "models": 3, "ranking": 3,
    "train": 4,
    "inference": 5,
    "eval": 6,
    "serve": 7,
    "pipeline": 8, "cli": 8, "retrain": 8,
}
ROOT = pathlib.Path(graphtrain.__file__).parent


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "graphtrain" or len(parts) < 2:
        return None
    return LAYERS.get(parts[1])


def _imports(path: pathlib.Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            for alias in node.names:  # `from graphtrain import storage`
                yield f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_no_module_imports_a_later_stage():
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        name = ".".join(("graphtrain", *path.relative_to(ROOT).with_suffix("").parts))
        own = _layer(name)
        if own is None:  # graphtrain/__init__.py: the public API re-exports every stage
            continue
        for imported in _imports(path):
            theirs = _layer(imported)
            if theirs is not None and theirs > own:
                wrong.append(f"{name} imports {imported}")
    assert not wrong, "\n".join(wrong)


def test_every_package_folder_has_a_layer():
    folders = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith("_")}
    modules = {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"}
    assert folders | modules <= set(LAYERS), sorted((folders | modules) - set(LAYERS))
