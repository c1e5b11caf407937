"""The package's import graph: no circle, and no import from a lower room to a higher one, so that imaging knows
nothing of the model, and nothing below the service or training knows of them."""

import functools
import re

from tests.helpers import ROOT

# Lowest first; a room may import its own modules and those of the rooms before it.
LAYERS = [{"paths"}, {"i18n"}, {"imaging"}, {"inference"}, {"feedback"}, {"service", "training"}]


# Import statements, read as text: ast.parse costs seconds on the copies that mutmut makes of every function.
FROM = re.compile(r"^\s*from\s+([\w.]+)\s+import\s+(\([^)]*\)|[^\n]*)", re.MULTILINE)
IMPORT = re.compile(r"^\s*import\s+([\w.]+)", re.MULTILINE)


def imported(text: str) -> set[str]:
    """The modules a source imports, with each name taken from a module as a possible submodule."""
    names = {m.group(1) for m in IMPORT.finditer(text)}
    for m in FROM.finditer(text):
        taken = re.sub(r"#.*", "", m.group(2)).strip("()").split(",")
        names |= {m.group(1)} | {f"{m.group(1)}.{n.split(' as ')[0].strip()}" for n in taken if n.strip()}
    return names


@functools.cache
def graph() -> dict[str, set[str]]:
    """Each module of digits/ and the modules of digits/ it imports."""
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for p in (ROOT / "digits").rglob("*.py")
    }
    return {name: (imported(path.read_text()) & modules.keys()) - {name} for name, path in modules.items()}


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
