"""Every key binding of the main window, as data: one table feeds the menus, the actions and the shortcut sheet.

An :class:`ActionSpec` names a command (``id``), where it appears (``menu``), its keys and a one-line help.
The window creates one QAction per spec and connects it by id; :data:`HELD_KEYS` lists the bindings that
are not commands (keys held down, mouse gestures) so the sheet can show them too. Changing a binding here
changes it everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtGui import QKeySequence

from priorstudio.gui import qt_compat  # noqa: F401  (first: guards a PySide6 refcount bug)

StandardKey = QKeySequence.StandardKey


@dataclass(frozen=True)
class ActionSpec:
    """One command: ``keys`` are portable key strings ("Ctrl+O") or platform standard keys."""

    id: str
    text: str
    menu: str
    keys: tuple[str | StandardKey, ...] = ()
    help: str = ""
    checkable: bool = False


#: Menus in display order.
MENUS = ("File", "Edit", "View", "Mask", "Run", "Help")

ACTIONS: tuple[ActionSpec, ...] = (
    # File
    ActionSpec("open", "&Open…", "File", (StandardKey.Open,), "open a photo"),
    ActionSpec("paste", "&Paste image", "File", (StandardKey.Paste,), "open the image on the clipboard"),
    ActionSpec("open_sample", "Open &sample image", "File", (), "open the bundled sample photo"),
    ActionSpec("save", "&Save result", "File", (StandardKey.Save,), "save the result as PNG"),
    ActionSpec("save_as", "Save result &as…", "File", ("Ctrl+Shift+S",), "save the result under a new name"),
    ActionSpec("save_run", "Save run &record…", "File", (), "save parameters (JSON) and every step (CSV)"),
    ActionSpec("copy_result", "&Copy result", "File", ("Ctrl+Shift+C",), "copy the result to the clipboard"),
    ActionSpec("quit", "&Quit", "File", (StandardKey.Quit,), "close the window"),
    # Edit
    ActionSpec("undo", "&Undo", "Edit", (StandardKey.Undo,), "undo the last mask edit"),
    ActionSpec("redo", "&Redo", "Edit", (StandardKey.Redo,), "redo the mask edit just undone"),
    # View
    ActionSpec("fit", "&Fit to window", "View", ("0",), "show the whole image"),
    ActionSpec("actual_size", "&100%", "View", ("1",), "one image pixel per screen pixel"),
    ActionSpec("zoom_in", "Zoom &in", "View", (StandardKey.ZoomIn, "Ctrl+="), "zoom in at the centre"),
    ActionSpec("zoom_out", "Zoom &out", "View", (StandardKey.ZoomOut,), "zoom out at the centre"),
    ActionSpec("view_observed", "&Observed", "View", ("F2",), "show the degraded input", True),
    ActionSpec("view_estimate", "&Estimate", "View", ("F3",), "show the current estimate / result", True),
    ActionSpec("view_truth", "&Ground truth", "View", ("F4",), "show the original (simulate mode)", True),
    ActionSpec("split", "S&plit view", "View", ("Ctrl+\\",), "observed left, estimate right; drag the divider", True),
    ActionSpec("show_mask", "Show &mask", "View", ("M",), "show the mask over the image", True),
    # Mask
    ActionSpec("brush", "&Brush", "Mask", ("B",), "paint the pixels to fill", True),
    ActionSpec("eraser", "&Eraser", "Mask", ("E",), "erase from the mask (or drag with the right button)", True),
    ActionSpec("brush_smaller", "Brush s&maller", "Mask", ("[",), "smaller brush"),
    ActionSpec("brush_larger", "Brush &larger", "Mask", ("]",), "larger brush"),
    ActionSpec(
        "brush_smaller10", "Brush much smaller", "Mask", ("Shift+[", "{", "Shift+{"), "smaller brush, ×10 steps"
    ),
    ActionSpec("brush_larger10", "Brush much larger", "Mask", ("Shift+]", "}", "Shift+}"), "larger brush, ×10 steps"),
    ActionSpec("mask_clear", "&Clear mask", "Mask", ("Ctrl+Shift+Backspace",), "empty the mask"),
    ActionSpec("mask_invert", "&Invert mask", "Mask", ("Ctrl+I",), "swap missing and known pixels"),
    ActionSpec("mask_random", "&Scattered mask…", "Mask", (), "mark a random share of the pixels to fill"),
    ActionSpec("mask_block", "Central &block", "Mask", (), "hide a centred block"),
    ActionSpec("mask_import", "I&mport mask…", "Mask", (), "load a mask PNG (white = missing)"),
    ActionSpec("mask_export", "E&xport mask…", "Mask", (), "save the mask as PNG (white = missing)"),
    # Run
    ActionSpec("run", "&Run", "Run", ("Ctrl+Return", "Ctrl+Enter"), "start restoring with the current settings"),
    ActionSpec("pause", "&Pause / resume", "Run", ("F6",), "pause or resume the run", True),
    ActionSpec("step", "Single &step", "Run", ("N",), "one step while paused"),
    ActionSpec("stop", "S&top", "Run", ("Esc", "F7"), "stop the run and keep the partial result"),
    # Help
    ActionSpec("shortcuts", "&Keyboard shortcuts", "Help", ("F1", "?"), "this sheet of every shortcut"),
    ActionSpec("about", "&About PriorStudio", "Help", (), "version and licences"),
)

#: Bindings that are not commands: keys held down and mouse gestures (shown on the sheet).
HELD_KEYS: tuple[tuple[str, str], ...] = (
    ("hold \\", "before ↔ after: show the observed image while held"),
    ("Space + drag, middle-drag", "pan"),
    ("wheel", "zoom at the cursor"),
    ("left-drag", "paint with the selected tool"),
    ("right-drag", "erase"),
    ("drag the divider", "move the split between observed and estimate"),
)

BY_ID: dict[str, ActionSpec] = {a.id: a for a in ACTIONS}


def key_sequences(spec: ActionSpec) -> list[QKeySequence]:
    """Every binding of the command: a standard key brings all its platform bindings (redo is Ctrl+Y and
    Ctrl+Shift+Z on Linux and Windows; QKeySequence(StandardKey) keeps only the first, and the other did
    nothing)."""
    seqs: list[QKeySequence] = []
    for k in spec.keys:
        for seq in QKeySequence.keyBindings(k) if isinstance(k, QKeySequence.StandardKey) else [QKeySequence(k)]:
            if not seq.isEmpty() and seq not in seqs:
                seqs.append(seq)
    return seqs


def key_text(spec: ActionSpec) -> str:
    """The keys as the platform writes them, e.g. "Ctrl+O" (a standard key's first binding); "" when the
    command has none."""
    texts = []
    for seq in (QKeySequence(k) for k in spec.keys):
        text = seq.toString(QKeySequence.SequenceFormat.NativeText)
        if text and text not in texts:
            texts.append(text)
    return ", ".join(texts)


def command_name(spec: ActionSpec) -> str:
    """The command as its menu names it, without the mnemonic and the ellipsis."""
    return spec.text.replace("&", "").rstrip("…").rstrip(".")


def sheet_rows() -> list[tuple[str, str, str, str]]:
    """(section, command, keys, help) rows for the shortcut sheet: every bound command, then the held keys."""
    rows = [(a.menu, command_name(a), key_text(a), a.help or command_name(a)) for a in ACTIONS if a.keys]
    rows += [("Canvas", "", keys, help_) for keys, help_ in HELD_KEYS]
    return rows
