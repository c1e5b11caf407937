"""The package's import graph: no circle, and no import from a lower room to a higher one, so that imaging knows
nothing of the model, and nothing below the service or training knows of them."""

import ast

from tests.helpers import ROOT

# Lowest first; a room may import its own modules and those of the rooms before it.
LAYERS = [{"paths"}, {"imaging"}, {"inference"}, {"feedback"}, {"service", "training"}]


def graph() -> dict[str, set[str]]:
    """Each module of digits/ and the modules of digits/ it imports."""
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for p in (ROOT / "digits").rglob("*.py")
    }
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        edges[name] = {m for m in found if m in modules and m != name}
    return edges


def room(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "paths"


def layer(module: str) -> int:
    return next(i for i, rooms in enumerate(LAYERS) if room(module) in rooms)


def test_every_room_has_its_layer():
    assert {room(m) for m in graph() if m != "digits"} == set().union(*LAYERS)


def test_no_import_goes_up_or_across():
    wrong = [
        f"{a} imports {b}"
        for a, targets in graph().items()
        if a != "digits"
        for b in targets
        if layer(b) > layer(a) or (layer(b) == layer(a) and room(b) != room(a))
    ]
    assert not wrong


def test_no_import_circle():
    edges = graph()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        assert module not in path, " -> ".join([*path[path.index(module) :], module])
        if module not in done:
            for target in edges[module]:
                visit(target, [*path, module])
            done.add(module)

    for module in edges:
        visit(module, [])
