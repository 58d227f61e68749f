"""The user guide cannot drift from the code.

- Its shortcut table (between the ``shortcuts:start`` / ``shortcuts:end`` markers) is exactly what
  :func:`shortcut_table` builds from ``priorstudio.gui.keymap``: change a binding and this test names the
  table to paste back into docs/user-guide.md.
- Every ``priorstudio …`` command line it shows names a subcommand that exists and only options that
  subcommand accepts, every option in a ``### `priorstudio NAME` `` section belongs to NAME, every other
  ``--option`` quoted belongs to some subcommand, and every subcommand of the parser is mentioned.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "user-guide.md"
START, END = "<!-- shortcuts:start -->", "<!-- shortcuts:end -->"

#: How the guide writes a platform standard key: its usual binding, marked with a dagger (see the guide).
STANDARD_KEYS = {
    "Open": "Ctrl+O",
    "Paste": "Ctrl+V",
    "Save": "Ctrl+S",
    "Quit": "Ctrl+Q",
    "Undo": "Ctrl+Z",
    "Redo": "Ctrl+Shift+Z",
    "ZoomIn": "Ctrl++",
    "ZoomOut": "Ctrl+-",
}


def guide_text() -> str:
    return GUIDE.read_text(encoding="utf-8")


# -- the shortcut table ------------------------------------------------------------------------------------
def _keymap() -> Any:
    pytest.importorskip("PySide6")
    from priorstudio.gui import keymap

    return keymap


def _key_cell(keys: tuple[Any, ...]) -> str:
    cells = []
    for key in keys:
        if isinstance(key, str):
            cells.append(f"`{key}`")
        else:
            cells.append(f"`{STANDARD_KEYS[key.name]}`†")
    return ", ".join(cells)


def shortcut_table(keymap: Any) -> str:
    """The guide's table: every command with keys (menu order), then the held keys and mouse gestures."""
    lines = ["| menu | command | keys | what it does |", "|---|---|---|---|"]
    for a in keymap.ACTIONS:
        if a.keys:
            text = a.text.replace("&", "")
            lines.append(f"| {a.menu} | {text} | {_key_cell(a.keys)} | {a.help or text} |")
    for keys, help_ in keymap.HELD_KEYS:
        lines.append(f"| Canvas | — | `{keys}` | {help_} |")
    return "\n".join(lines)


def test_shortcut_table_matches_the_keymap() -> None:
    keymap = _keymap()
    text = guide_text()
    assert START in text and END in text, f"{GUIDE.name} lost its shortcut markers"
    shown = text.split(START, 1)[1].split(END, 1)[0].strip()
    expected = shortcut_table(keymap)
    assert shown == expected, f"the shortcut table in {GUIDE.name} is out of date; it should read:\n{expected}"


def test_standard_keys_are_written_as_the_platform_binds_them(qapp) -> None:
    """Where the platform binds a standard key at all, the binding the guide shows is among its bindings."""
    keymap = _keymap()
    from PySide6.QtGui import QKeySequence

    portable = QKeySequence.SequenceFormat.PortableText
    for action in keymap.ACTIONS:
        for key in action.keys:
            if isinstance(key, str):
                continue
            assert key.name in STANDARD_KEYS, f"document the standard key {key.name} ({action.id}) in the guide"
            bindings = [b.toString(portable) for b in QKeySequence.keyBindings(key)]
            assert not bindings or STANDARD_KEYS[key.name] in bindings, (key.name, bindings)


# -- the command line -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    from priorstudio.cli import build_parser

    return build_parser()


def _subcommands(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(p: argparse.ArgumentParser) -> set[str]:
    return set(p._option_string_actions)


def _command_lines(text: str) -> list[str]:
    """``priorstudio …`` lines of the fenced code blocks (``torchrun … -m priorstudio …`` too) and inline code."""
    found = []
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            line = line.split(" #", 1)[0].strip()
            if line.startswith("priorstudio"):
                found.append(line)
            elif " -m priorstudio" in line:
                found.append("priorstudio" + line.split(" -m priorstudio", 1)[1])
    found += re.findall(r"`(priorstudio(?: [^`]*)?)`", text)
    return found


def _code_spans(text: str) -> list[str]:
    """The inline code spans of ``text`` (fenced blocks left out), stripped; empty ones dropped."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    return [span.strip() for span in re.findall(r"`([^`]+)`", prose) if span.strip()]


def _is_option(token: str) -> bool:
    return token.startswith("-") and not re.fullmatch(r"-\d[\d.]*", token)


def _check_options(where: str, tokens: list[str], p: argparse.ArgumentParser) -> None:
    for token in tokens:
        if _is_option(token):
            option = token.split("=", 1)[0]
            assert option in _options(p), f"{where}: {option} is not an option of `{p.prog}`"


def test_every_command_line_names_real_subcommands_and_options(parser: argparse.ArgumentParser) -> None:
    lines = _command_lines(guide_text())
    assert lines, "the guide shows no command lines"
    commands = _subcommands(parser)
    for line in lines:
        tokens = [t.strip("[]") for t in shlex.split(line) if t not in ("|", "…")]
        tokens = [t for t in tokens if t and "…" not in t]
        rest = tokens[1:]
        if not rest or rest[0].startswith("-"):
            _check_options(line, rest, parser)
            continue
        name = rest[0]
        if name.isupper():  # a placeholder such as COMMAND
            continue
        assert name in commands, f"{line}: no subcommand {name!r}"
        sub = commands[name]
        if name == "bench" and len(rest) > 1 and not rest[1].startswith("-") and not rest[1].isupper():
            benches = _subcommands(sub)
            assert rest[1] in benches, f"{line}: no benchmark {rest[1]!r}"
            sub = benches[rest[1]]
        _check_options(line, rest[1:], sub)


def test_option_tables_belong_to_their_subcommand(parser: argparse.ArgumentParser) -> None:
    commands = _subcommands(parser)
    sections = re.split(r"^(?=#{2,3} )", guide_text(), flags=re.MULTILINE)
    checked = 0
    for section in sections:
        heading = re.match(r"### `priorstudio (\w+)`", section)
        if not heading:
            continue
        name = heading.group(1)
        assert name in commands, f"section for a missing subcommand {name!r}"
        allowed = _options(commands[name])
        if name == "bench":
            for bench in _subcommands(commands[name]).values():
                allowed |= _options(bench)
        for span in _code_spans(section):
            first = span.split()[0]
            if _is_option(first) and not span.startswith("priorstudio"):
                assert first.split("=", 1)[0] in allowed, f"`{span}` in the {name} section is not an option of it"
                checked += 1
    assert checked, "no option was found in the command-line sections"


def test_every_subcommand_is_in_the_guide(parser: argparse.ArgumentParser) -> None:
    text = guide_text()
    for name in _subcommands(parser):
        assert f"priorstudio {name}" in text, f"the guide does not mention `priorstudio {name}`"


def test_every_option_mentioned_anywhere_exists(parser: argparse.ArgumentParser) -> None:
    """An option quoted outside the command-line sections (e.g. beside a parameter) belongs to some subcommand."""
    known = _options(parser)
    for sub in _subcommands(parser).values():
        known |= _options(sub)
        for bench in _subcommands(sub).values():
            known |= _options(bench)
    for span in _code_spans(guide_text()):
        first = span.split()[0]
        if first.startswith("--"):
            assert first.split("=", 1)[0] in known, f"`{span}` is not an option of any priorstudio command"
