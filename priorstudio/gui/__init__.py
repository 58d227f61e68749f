"""PriorStudio's desktop application (PySide6 + pyqtgraph).

Start it with :func:`priorstudio.gui.app.run_app`; the main window is
:class:`priorstudio.gui.main_window.MainWindow`. Qt-free parts (the mask model, the run planner, the
progress estimate) are importable without a display.
"""
