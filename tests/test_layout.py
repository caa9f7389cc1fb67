"""The package's design, held against its imports: folders by concept, dependencies in one direction, no circles,
and a shipped model folder that needs nothing but torch, transformers (with PIL, its vision backend) and timm."""

import ast
import sys
from pathlib import Path

import torch
from helpers import save_model_folder


PACKAGE = Path(__file__).parents[1] / "modeling_q2l"
# A subpackage may import itself and the ones before it, never one after it.
LAYERS = ["model", "data", "mosaics", "evaluation", "zoo", "export", "hub", "demo", "benchmark", "training", "cli"]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(name: str) -> bool:
    return (PACKAGE.parent / name.replace(".", "/") / "__init__.py").is_file()


def imports_of(path: Path) -> list[tuple[str, ast.AST]]:
    """(imported module of this package, or the top-level name of an outside one) for every import in the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            submodules = [f"{target}.{alias.name}" for alias in node.names if is_package(target) and
                          ((PACKAGE.parent / f"{target}.{alias.name}".replace(".", "/")).with_suffix(".py").is_file()
                           or is_package(f"{target}.{alias.name}"))]  # fmt: skip
            found += [(module, node) for module in submodules] or [(target, node)]
    return found


def internal_graph() -> dict[str, set[str]]:
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        graph[module_name(path)] = {target for target, _ in imports_of(path) if target.split(".")[0] == "modeling_q2l"}
    return graph


def test_no_import_circles():
    graph = internal_graph()
    # the graph sees relative, absolute and function-level imports alike
    assert "modeling_q2l.model.configuration_query2label" in graph["modeling_q2l.model.modeling_query2label"]
    assert "modeling_q2l.hub.model_card" in graph["modeling_q2l.training.main"]
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_subpackages_depend_in_one_direction():
    subpackages = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert subpackages == set(LAYERS), "give each subpackage its place in LAYERS"
    wrong = []
    for source, targets in internal_graph().items():
        parts = source.split(".")
        if len(parts) < 2 or parts[1] not in LAYERS:
            continue
        for target in targets:
            layer = target.split(".")[1] if target.count(".") else None
            if layer is None and LAYERS.index(parts[1]) < LAYERS.index("training"):
                wrong.append((source, target))  # only training may use the package's public face
            elif layer in LAYERS and LAYERS.index(layer) > LAYERS.index(parts[1]):
                wrong.append((source, target))
    assert wrong == []


def test_the_model_folder_imports_only_its_siblings_torch_transformers_timm_and_pil():
    siblings = {path.stem for path in (PACKAGE / "model").glob("*.py")}
    for path in (PACKAGE / "model").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 and node.module in siblings, f"{path.name}: from {'.' * node.level}{node.module}"
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module]
                for name in names:
                    top = name.split(".")[0]
                    # PIL: transformers' vision backend, which its image processors need anyway
                    assert top in {"torch", "transformers", "timm", "PIL"} or top in sys.stdlib_module_names, f"{path.name}: {name}"


def test_a_saved_model_folder_holds_exactly_the_model_files(tmp_path):
    torch.manual_seed(0)
    save_model_folder(tmp_path)
    shipped = {path.name for path in tmp_path.glob("*.py")}
    expected = {path.name for path in (PACKAGE / "model").glob("*.py")} - {"__init__.py"}
    assert shipped == expected
    for name in shipped:
        assert (tmp_path / name).read_text() == (PACKAGE / "model" / name).read_text()


def test_the_package_reads_no_repository_or_system_path():
    """No string in the package names a system data folder or the repository's `data/`: the entry points pass them."""
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not node.value.startswith(("/usr/share", "data/fashion-mnist")), (path, node.value)


def called_names(path: Path) -> set[str]:
    calls = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            function = node.func
            calls.add(function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", ""))
    return calls


def test_splits_are_loaded_in_one_place():
    """Training, evaluation and prediction read datasets only through `data/splits.py`; elsewhere only the dataset
    builder and the benchmarks that make their own data from the embedded set open datasets."""
    loaders = {"load_raw_datasets", "load_coco_instances", "load_dataset", "load_from_disk"}
    readers = {str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py") if called_names(path) & loaders}
    assert readers == {"data/splits.py", "data/loading.py", "mosaics/builder.py", "benchmark/checks.py", "benchmark/prediction.py", "benchmark/transfer.py"}


def test_the_training_entry_point_only_orchestrates():
    """`training/main.py` holds one function, which builds nothing itself: the model, data, trainer, report and
    card come from the modules it calls."""
    import modeling_q2l.training.main as main

    tree = ast.parse(Path(main.__file__).read_text())
    assert [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))] == ["run"]
    assert not any(isinstance(node, (ast.For, ast.While)) for node in ast.walk(tree))
