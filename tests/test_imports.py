"""The modules of src/ import each other without a circle, counting imports inside functions too
(a lazy import hides a circle; it does not remove it)."""
import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"


def imports_of(path: Path) -> set[str]:
    """The src modules a module imports anywhere in it (relative imports: `from .x import y`, `from . import x`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found |= {a.name for a in node.names}
    return found & {p.stem for p in SRC.glob("*.py")}


def test_no_import_circle():
    graph = {p.stem: imports_of(p) for p in SRC.glob("*.py")}
    state: dict[str, str] = {}

    def visit(node, trail):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", "import circle: " + " -> ".join(trail + [node])
        state[node] = "open"
        for nxt in sorted(graph[node]):
            visit(nxt, trail + [node])
        state[node] = "done"

    for module in sorted(graph):
        visit(module, [])
    assert "pipeline" in graph["bench"] and "config" in graph["runtime"]  # the graph is the real one
