"""The shape of src/: modules import each other without a circle, counting imports inside functions
too (a lazy import hides a circle; it does not remove it); every package imports only the packages before it; every
module run as a process runs; no function grows past what a reader holds in view."""
import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}


def imports_of(path: Path) -> set[str]:
    """The src modules a module imports anywhere in it: `from ..core import config` counts as
    src.core.config, `from .ensemble import X` as src.infer.ensemble."""
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package[:len(package) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        for alias in node.names:
            if f"{target}.{alias.name}" in MODULES:
                found.add(f"{target}.{alias.name}")
            elif target in MODULES:
                found.add(target)
    return found


GRAPH = {m: imports_of(p) for m, p in MODULES.items()}


def test_no_import_circle():
    state: dict[str, str] = {}

    def visit(node, trail):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", "import circle: " + " -> ".join(trail + [node])
        state[node] = "open"
        for nxt in sorted(GRAPH[node]):
            visit(nxt, trail + [node])
        state[node] = "done"

    for module in sorted(GRAPH):
        visit(module, [])
    # the graph is the real one
    assert "src.pipeline.job" in GRAPH["src.measure.bench"] and "src.core.errors" in GRAPH["src.core.machine"]
    assert "src.infer.ensemble" in GRAPH["src.infer.predict"]


# Which packages a package may use: one way, each package only those before it (training validates through
# the one inference path, so train/ comes after infer/); nothing but stages/ imports a command.
PACKAGES = ("core", "data", "persons", "model", "infer", "train", "report", "pipeline", "measure", "stages")
MAY_USE = {package: set(PACKAGES[:i + 1]) for i, package in enumerate(PACKAGES)}


def test_every_module_run_as_a_process_has_a_main():
    """`python -m src.X` of a module without a __main__ block runs nothing and exits 0: a subprocess
    named by text (the pipeline's workers, gpucheck's runs) must name a module that runs."""
    named = {m.group(1) for p in MODULES.values() for m in re.finditer(r'"-m",\s*"(src\.[\w.]+)"', p.read_text())}
    named |= set(re.findall(r"-m (src\.[\w.]+)", (SRC.parent / "run.sh").read_text()))
    named |= {m for m in MODULES if m.startswith("src.stages.")}  # run.sh: -m "src.stages.$stage"
    assert {"src.stages.train", "src.stages.speed", "src.pipeline.fold_worker"} <= named
    for module in named:
        assert 'if __name__ == "__main__":' in MODULES[module].read_text(), f"{module} runs nothing"


def test_each_package_uses_only_the_packages_before_it():
    wrong = [f"{m} imports {t}" for m, deps in GRAPH.items() for t in deps
             if t.split(".")[1] not in MAY_USE[m.split(".")[1]]]
    assert not wrong, wrong
    assert set(MAY_USE) == {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}


def test_no_function_over_60_lines_or_7_parameters():
    """self/cls aside; *args and **kwargs count as one each."""
    too_big = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            a = node.args
            params = [x for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
            n_params = len(params) + bool(a.vararg) + bool(a.kwarg)
            lines = node.end_lineno - node.lineno + 1
            if lines > 60 or n_params > 7:
                too_big.append(f"{module}.{node.name}: {lines} lines, {n_params} parameters")
    assert not too_big, too_big
