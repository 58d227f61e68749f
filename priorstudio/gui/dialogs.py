"""Small dialogs: the shortcut sheet (built from the keymap), errors, and the close confirmation."""

from __future__ import annotations

from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from priorstudio.gui import qt_compat  # noqa: F401  (first: guards a PySide6 refcount bug)
from priorstudio.gui.keymap import sheet_rows


class ShortcutSheet(QtWidgets.QDialog):
    """Every binding of the keymap in one table, grouped by menu: the command, its keys, what it does."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        rows = sheet_rows()
        table = QtWidgets.QTableWidget(len(rows), 4)
        table.setHorizontalHeaderLabels(["", "command", "keys", "does"])
        table.verticalHeader().setVisible(False)
        table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.NoSelection)
        table.setWordWrap(True)
        previous = None
        for i, (section, command, keys, text) in enumerate(rows):
            first = QtWidgets.QTableWidgetItem(section if section != previous else "")
            font = first.font()
            font.setBold(True)
            first.setFont(font)
            table.setItem(i, 0, first)
            table.setItem(i, 1, QtWidgets.QTableWidgetItem(command))
            table.setItem(i, 2, QtWidgets.QTableWidgetItem(keys))
            table.setItem(i, 3, QtWidgets.QTableWidgetItem(text))
            previous = section
        table.resizeColumnsToContents()
        table.horizontalHeader().setStretchLastSection(True)
        table.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # long help wraps
        self.table = table
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(table)
        layout.addWidget(buttons)
        # wide enough for the first three columns and a readable last one; at most most of the screen
        room = self.screen().availableGeometry()
        width = sum(table.columnWidth(c) for c in range(3)) + 380
        self.resize(min(width, int(0.9 * room.width())), min(860, int(0.85 * room.height())))

    def showEvent(self, event: QtGui.QShowEvent) -> None:
        super().showEvent(event)
        table = self.table
        table.resizeRowsToContents()  # now that the last column has its width, wrapped rows fit
        rows = sum(table.rowHeight(r) for r in range(table.rowCount()))
        spare = table.viewport().height() - rows
        if spare > 0:  # no empty space under the last row
            self.resize(self.width(), self.height() - spare + 2)


def show_error(parent: QtWidgets.QWidget | None, title: str, message: str) -> None:
    """A warning dialog; the application goes on afterwards."""
    box = QtWidgets.QMessageBox(parent)
    box.setIcon(QtWidgets.QMessageBox.Icon.Warning)
    box.setWindowTitle(title)
    box.setText(message)
    box.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
    box.exec()


def ask_overwrite(parent: QtWidgets.QWidget | None, path: Path) -> bool:
    """Ask before replacing ``path``; True to replace it."""
    buttons = QtWidgets.QMessageBox.StandardButton
    answer = QtWidgets.QMessageBox.question(
        parent, "Replace file?", f"{path} already exists. Replace it?", buttons.Yes | buttons.No, buttons.No
    )
    return answer == buttons.Yes


def ask_close(parent: QtWidgets.QWidget | None, reason: str, action: str = "close the window") -> str:
    """Ask before closing. ``reason``: "running" (a run), "comparing" (a comparison, nothing unsaved),
    "comparing unsaved" (a comparison, and the last run's result unsaved) or "unsaved"; ``action``: what the
    user is about to do ("close the window", "open another photo"). Returns "save", "discard" or "cancel"."""
    box = QtWidgets.QMessageBox(parent)
    box.setIcon(QtWidgets.QMessageBox.Icon.Question)
    box.setWindowTitle("Close PriorStudio" if action == "close the window" else "PriorStudio")
    go = "close" if action == "close the window" else "open"
    buttons = QtWidgets.QMessageBox.StandardButton
    # reason → (what is going on, the question, whether a result can be saved first)
    questions = {
        "running": ("A run is still going.", f"Stop it and {action}? Its result so far can be saved first.", True),
        "comparing": ("A comparison is still going.", f"Stop it and {action}?", False),
        "comparing unsaved": (
            "A comparison is still going, and the last run's result has not been saved.",
            f"Stop the comparison and {action}? The result can be saved first.",
            True,
        ),
    }
    if reason in questions:
        text, question, can_save = questions[reason]
        box.setText(text)
        box.setInformativeText(question)
        box.setStandardButtons((buttons.Save if can_save else buttons.NoButton) | buttons.Discard | buttons.Cancel)
        if can_save:
            box.button(buttons.Save).setText("Stop and save…")
        box.button(buttons.Discard).setText(f"Stop and {go}")
    else:
        box.setText("The result has not been saved.")
        box.setInformativeText(f"Save it before you {action}?")
        box.setStandardButtons(buttons.Save | buttons.Discard | buttons.Cancel)
    box.setDefaultButton(buttons.Cancel)
    answer = box.exec()
    if answer == buttons.Save:
        return "save"
    if answer == buttons.Discard:
        return "discard"
    return "cancel"
