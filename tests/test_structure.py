"""The shape the code keeps, beside the import contracts `lint-imports` checks (setup.cfg): imports inside functions
only for the backend, the heavy libraries and the optional extras, named here once; no class made inside a
function; small folders (at most 15 modules) of short modules (at most 400 lines), each opening with the line that
says its job. Read from the source with `ast`: nothing is imported, and it takes milliseconds."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ["cli.py", "__main__.py", "__init__.py", "options.py", "commands", "classifiers", "pipeline", "features"]
# the command line loads what a command needs only when it runs, so that `--help` and argument errors stay quick:
# inside its functions are its seams
COMMAND_LINE = ["cli.py", "options.py", "commands"]

# What a module may import inside a function, and only there: the backend (and TensorFlow's own converters), the
# heavy libraries that quick commands never load, the optional extras (whose absence is one line where they are
# asked for), and cnncodes' own modules that import the backend at their top (its Keras layers and callbacks).
LAZY = {"keras", "tensorflow", "jax", "torch", "matplotlib", "distributed", "dask", "h5py", "sklearn", "tqdm", "umap",
        "cleanlab", "cnncodes.pipeline.layers", "cnncodes.classifiers.training.keras_training",
        "cnncodes.classifiers.training.airbench_keras"}  # modules that import the backend at their top
MAX_MODULES, MAX_LINES = 15, 400


def product_files() -> list[Path]:
    files = []
    for part in PRODUCT:
        path = ROOT / part
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def function_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, module) of each import statement inside a function."""
    found = []
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    found += [(node.lineno, a.name) for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    found.append((node.lineno, "." * node.level + (node.module or "")))
    return found


def lazy(module: str) -> bool:
    return module in LAZY or module.split(".")[0] in LAZY


def test_functions_import_only_the_backend_heavy_libraries_and_extras():
    hidden = [f"{path.relative_to(ROOT)}:{line} {module}" for path in product_files()
              if path.relative_to(ROOT).parts[0] not in COMMAND_LINE
              for line, module in function_imports(ast.parse(path.read_text())) if not lazy(module)]
    assert hidden == []
    assert lazy("keras.layers") and not lazy("cnncodes.classifiers.heads.registry")


def test_no_class_is_made_inside_a_function():
    """Keras layers and callbacks made inside functions were a new class on each call, invisible to readers
    and to Keras's serialisation: they are module-level classes (keras_training.py, pipeline/layers.py)."""
    made = []
    for path in product_files():
        for function in ast.walk(ast.parse(path.read_text())):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                made += [f"{path.relative_to(ROOT)}:{node.lineno} {node.name}" for node in ast.walk(function)
                         if isinstance(node, ast.ClassDef)]
    assert made == []


def test_every_module_opens_with_the_line_that_says_its_job():
    silent = [str(path.relative_to(ROOT)) for path in product_files()
              if path.stat().st_size and not ast.get_docstring(ast.parse(path.read_text()))]
    assert silent == []


def test_modules_stay_short():
    long = {str(path.relative_to(ROOT)): n for path in product_files()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_folders_stay_small():
    folders = {path.parent for path in product_files() if path.parent != ROOT}
    crowded = {str(f.relative_to(ROOT)): n for f in folders
               if (n := len([p for p in f.glob("*.py") if p.name != "__init__.py"])) > MAX_MODULES}
    assert crowded == {}
