"""Imports in classifiers/ run one way (issue 20): no module imports another in a circle, so each imports
first in a fresh interpreter, in any order, and none hides a classifiers import inside a function to dodge
one. Read from the source with `ast`: nothing is imported, and it takes milliseconds."""
import ast
from pathlib import Path

import cnncodes.classifiers

PACKAGE = Path(cnncodes.classifiers.__file__).parent
PREFIX = "cnncodes.classifiers"


def classifiers_imports(node) -> set[str]:
    """The classifiers modules an import statement names: `from .x import`, `from . import x`,
    `from cnncodes.classifiers.x import`, `from cnncodes.classifiers import x`, `import cnncodes.classifiers.x`."""
    if isinstance(node, ast.Import):
        return {a.name.split(".")[2] for a in node.names if a.name.startswith(PREFIX + ".")}
    if not isinstance(node, ast.ImportFrom):
        return set()
    if node.level == 1 or node.module == PREFIX:  # relative: classifiers/ has no subpackages
        return {node.module} if node.level and node.module else {a.name for a in node.names}
    if node.module and node.module.startswith(PREFIX + "."):
        return {node.module.split(".")[2]}
    return set()


def modules() -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text(), str(path)) for path in sorted(PACKAGE.glob("*.py"))}


def top_level_graph() -> dict[str, set[str]]:
    """Module -> the classifiers modules it imports when it is imported (its top level, not its functions)."""
    return {name: set().union(*map(classifiers_imports, tree.body)) - {"__init__"} for name, tree in modules().items()}


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the modules along it, or None."""
    state = {}  # name: "open" while its imports are followed, "done" after

    def visit(name, path):
        state[name] = "open"
        for other in sorted(graph.get(name, ())):
            if state.get(other) == "open":
                return path[path.index(other):] + [other]
            if other not in state and (found := visit(other, path + [other])):
                return found
        state[name] = "done"
        return None

    return next((found for name in sorted(graph) if name not in state and (found := visit(name, [name]))), None)


def test_the_parser_sees_every_form_of_import_and_the_search_finds_a_circle():
    forms = ("from .heads import make_head\nfrom . import runs, persist\nfrom cnncodes.classifiers.train import x\n"
             "from cnncodes.classifiers import kfold\nimport cnncodes.classifiers.fit\nfrom cnncodes.features import schema")
    assert set().union(*map(classifiers_imports, ast.parse(forms).body)) == {"heads", "runs", "persist", "train",
                                                                            "kfold", "fit"}
    assert cycle({"heads": {"inputs"}, "inputs": {"params"}, "params": {"heads"}}) == ["heads", "inputs", "params",
                                                                                       "heads"]
    assert cycle({"fit": {"heads", "params"}, "params": {"heads"}, "heads": set()}) is None


def test_classifiers_imports_form_no_circle():
    graph = top_level_graph()
    assert {"values", "registry", "params", "persist", "heads"} <= graph.keys()
    assert cycle(graph) is None, f"import circle: {' -> '.join(cycle(graph))}"


def test_value_rules_are_a_leaf_and_the_registry_is_imported_at_the_top():
    graph = top_level_graph()
    assert graph["values"] == set()
    assert "registry" in graph["params"] and "registry" in graph["persist"]


# the backend (and TensorFlow's own converters), the heavy libraries and the modules that import the backend at their top (the Keras classes of
# training, cnncodes' Keras layers), which quick commands never load
# umap: an optional extra (the report's --map umap), imported where it is asked for, so its absence is one line
LAZY = {"keras", "tensorflow", "matplotlib", "distributed", ".keras_training", "cnncodes.pipeline.layers", "umap"}


def function_imports() -> list[tuple[str, str]]:
    """(where, module) for each import statement inside a function of classifiers/."""
    found = []
    for name, tree in modules().items():
        for function in ast.walk(tree):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(function):
                    if isinstance(node, ast.Import):
                        found += [(f"{name}.py:{node.lineno}", a.name) for a in node.names]
                    elif isinstance(node, ast.ImportFrom):
                        found.append((f"{name}.py:{node.lineno}", "." * node.level + (node.module or "")))
    return found


def test_functions_import_only_what_keeps_quick_commands_light():
    """An import inside a function that names a classifiers module only dodges a circle; the ones left keep
    keras, matplotlib, distributed or an optional extra off commands that do not need them."""
    hidden = [(where, module) for where, module in function_imports()
              if module.split(".")[0] not in LAZY and module not in LAZY]
    assert hidden == []
    assert any(module == "keras" for _, module in function_imports())  # the walk does see them


def test_no_class_is_made_inside_a_function():
    """Keras layers and callbacks made inside functions were a new class on each call, invisible to readers
    and to Keras's serialisation: they are module-level classes (keras_training.py, pipeline/layers.py)."""
    root = Path(__file__).resolve().parents[1]
    made = []
    for file in sorted([*root.glob("*.py"), *root.glob("classifiers/**/*.py"), *root.glob("pipeline/**/*.py"),
                        *root.glob("features/**/*.py")]):
        for function in ast.walk(ast.parse(file.read_text())):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                made += [f"{file.relative_to(root)}:{node.lineno} {node.name}" for node in ast.walk(function)
                         if isinstance(node, ast.ClassDef)]
    assert made == []
