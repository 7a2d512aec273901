"""The layering anyone can draw, checked on the source: every import points down.

    data and run files -> training -> measurement and diagnosis -> submission and grading -> command line

A module may import its own layer and the layers before it, never a later one (an import inside
`if __name__ == "__main__":` is a script's entry point and does not count, and the package's
own __init__ is its public face: `from breaklab import Monitor` loads the monitor on first use), and no two modules
import each other, directly or round a loop. The walk reads the source with `ast`; nothing runs.
"""
from __future__ import annotations

import ast
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Where each part of the package stands in the checkout.
SOURCES = {"breaklab": ROOT / "breaklab", "breaklab.breaks": ROOT / "breaks", "breaklab.grader": ROOT / "grader",
           "breaklab.solutions": ROOT / "solutions"}
ROOT_MODULES = {"breaklab.trainer": ROOT / "trainer.py", "breaklab.canonical_setup": ROOT / "canonical_setup.py"}

LAYERS = [
    ("data and run files", ["breaklab", "breaklab.atomic", "breaklab.canonical_setup", "breaklab.config",
                            "breaklab.catalogue", "breaklab.metric_log", "breaklab.tarballs", "breaklab.runfiles",
                            "breaklab.cache", "breaklab.secret", "breaklab.untrusted", "breaklab.process_gc",
                            "breaklab.solutions"]),
    ("training", ["breaklab.breaks", "breaklab.breaks.*", "breaklab.diagnostics", "breaklab.trainer",
                  "breaklab.layers", "breaklab.graph_memory"]),
    ("measurement and diagnosis", ["breaklab.rules", "breaklab.symptoms", "breaklab.remedies",
                                   "breaklab.doctor", "breaklab.doctor_calibration", "breaklab.triage", "breaklab.plots", "breaklab.mystery",
                                   "breaklab.run_summary", "breaklab.hints", "breaklab.early_warnings",
                                   "breaklab.monitor", "breaklab.integrations", "breaklab.integrations.*"]),
    ("submission and grading", ["breaklab.submission", "breaklab.presubmit", "breaklab.grader", "breaklab.grader.*",
                                "breaklab.exercises", "breaklab.exercises.*", "breaklab.solutions.*"]),
    ("command line", ["breaklab.cli", "breaklab.interrupted", "breaklab.__main__", "breaklab.commands", "breaklab.commands.*"]),
]


def module_files() -> dict[str, Path]:
    files = dict(ROOT_MODULES)
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            if "__pycache__" in path.parts or (package == "breaklab" and path.parent.name in ("breaks",)):
                continue
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join([package, *parts])] = path
    return files


def layer_of(module: str) -> int:
    for index, (_, patterns) in enumerate(LAYERS):
        if any(fnmatch(module, p) for p in patterns):
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py")


def imports(path: Path, module: str, known: set[str]) -> set[str]:
    """The project modules `module` imports, at any depth, except in a __main__ block."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    skip = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
                and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"):
            skip.update(id(n) for n in ast.walk(node))
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {module: imports(path, module, known) for module, path in files.items()}


def test_every_module_has_a_layer():
    for module in module_files():
        layer_of(module)


def test_imports_point_down_the_layers():
    upward = [f"{m} ({LAYERS[layer_of(m)][0]}) imports {d} ({LAYERS[layer_of(d)][0]})"
              for m, deps in graph().items() for d in sorted(deps)
              if layer_of(d) > layer_of(m) and not m.startswith(d + ".") and "breaklab" not in (m, d)]
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    edges = graph()
    # A package's __init__ importing its own submodules is how a package is built, not a cycle.
    edges = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in edges.items()}
    cycles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(path[path.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


def test_the_walk_sees_function_level_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from breaklab.trainer import train\nif __name__ == '__main__':\n"
                      "    import breaklab.cli\n")
    assert imports(source, "breaklab.x", {"breaklab.trainer", "breaklab.cli"}) == {"breaklab.trainer"}
