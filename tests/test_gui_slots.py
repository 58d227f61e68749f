"""No GUI class overrides a slot of a base class of this project.

PySide6 6.12 calls a slot that a subclass overrides in the thread that emits the signal, whatever the
connection type: a worker's "done" then ran its controller's handler in the worker thread. A hook method
called by the base class's slot is what a subclass overrides instead (see ThreadedController._before_failed).
"""

from __future__ import annotations

import ast
from pathlib import Path

GUI = Path(__file__).resolve().parents[1] / "priorstudio" / "gui"


def _is_slot(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return getattr(target, "id", getattr(target, "attr", "")) == "Slot"


def _classes() -> dict[str, tuple[str, list[str], set[str], set[str]]]:
    found = {}
    for path in sorted(GUI.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                methods = {b.name: b for b in node.body if isinstance(b, ast.FunctionDef)}
                slots = {name for name, fn in methods.items() if any(_is_slot(d) for d in fn.decorator_list)}
                bases = [getattr(b, "id", getattr(b, "attr", "")) for b in node.bases]
                found[node.name] = (path.name, bases, slots, set(methods))
    return found


def test_no_class_overrides_a_slot_of_its_base() -> None:
    classes = _classes()
    assert "ThreadedController" in classes and "RunController" in classes  # the walk sees the code
    overridden = []
    for name, (file, bases, slots, methods) in classes.items():
        for base in bases:
            if base in classes:
                _bfile, _bb, base_slots, base_methods = classes[base]
                clash = methods & base_methods & (base_slots | slots)
                overridden += [f"{file}: {name}.{m} overrides {base}.{m}" for m in sorted(clash)]
    assert overridden == []
