"""Several methods on the same degraded image, one after the other, in a worker thread.

The compare view must show exactly what ``priorstudio bench methods`` prints, so every method goes
through the core registry (``METHODS[name].run`` and ``summarize``). The worker emits

- ``methodStarted(name)`` before a method's first step;
- ``point(name, t, psnr, loss)`` for every record (scalars only, cheap; NaN where a record has none);
- ``frame(name, t, image)`` with a fresh display array at most ``max_fps`` times a second per method;
- ``methodFinished(name, summary)`` with the :class:`MethodSummary` (final and best images on the CPU);
- ``finished(summaries)`` once at the end (also after a stop), or ``failed(message)``.

A method that cannot run (the implicit prior without a denoiser, a size its network refuses) ends with a
summary whose ``error`` says why, and the others still run. ``stop()`` ends the running method with its
current estimate and skips the ones not yet started.
"""

from __future__ import annotations

import math
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot
from torch import Tensor

from priorstudio.core.errors import PriorStudioError
from priorstudio.core.operators.base import Operator
from priorstudio.core.samplers.base import StepRecord
from priorstudio.core.samplers.registry import MethodSummary, get_method, summarize
from priorstudio.gui import qt_compat  # noqa: F401  (first: guards a PySide6 refcount bug)
from priorstudio.gui.worker import FramePacer, ThreadedController, display_copy


@dataclass
class CompareJob:
    """One comparison: the problem every method sees and each method's complete parameters."""

    methods: tuple[str, ...]
    operator: Operator | None
    measurement: Tensor | None
    truth: Tensor | None
    init: Tensor | None
    params: dict[str, Any] = field(default_factory=dict)
    denoiser: Any = None
    #: why no denoiser could be loaded (shown on the methods that need one)
    denoiser_error: str = ""


class CompareWorker(QObject):
    """Runs a :class:`CompareJob` in its thread (moved there by :class:`CompareController`)."""

    methodStarted = Signal(str)
    point = Signal(str, int, float, float)
    frame = Signal(str, int, object)
    methodFinished = Signal(str, object)
    finished = Signal(object)
    failed = Signal(str)

    def __init__(self, job: CompareJob, *, max_fps: float = 10.0) -> None:
        super().__init__()
        self.job = job
        self.max_fps = max_fps
        self._pacer = FramePacer(max_fps, burst=1.0)
        self._stop = threading.Event()
        self.summaries: dict[str, MethodSummary] = {}

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @Slot()
    def run(self) -> None:
        try:
            for name in self.job.methods:
                if self._stop.is_set():
                    break
                self.methodStarted.emit(name)
                summary = self._run_one(name)
                self.summaries[name] = summary
                self.methodFinished.emit(name, summary)
        except Exception as error:  # a bug: report it, keep the application alive
            detail = "".join(traceback.format_exception_only(type(error), error)).strip()
            self.failed.emit(f"the comparison failed: {detail}")
            return
        finally:
            # the worker's wrapper can outlive the run: let go of the problem, the denoiser and the images
            summaries, self.summaries, self.job = self.summaries, {}, None
        self.finished.emit(dict(summaries))

    def _run_one(self, name: str) -> MethodSummary:
        job = self.job
        spec = get_method(name)
        self._pacer = FramePacer(self.max_fps, burst=1.0)  # each method's first frame goes at once
        if spec.needs_denoiser and job.denoiser is None and job.denoiser_error:
            return MethodSummary(name, spec.label, error=job.denoiser_error)
        try:
            stream = spec.run(
                operator=job.operator,
                measurement=job.measurement,
                params=job.params.get(name),
                truth=job.truth,
                denoiser=job.denoiser if spec.needs_denoiser else None,
                emit_every=None,
                init=job.init,
            )
            return summarize(name, stream, on_record=self._on_record)
        except PriorStudioError as error:
            return MethodSummary(name, spec.label, error=str(error))
        except MemoryError:
            return MethodSummary(name, spec.label, error="not enough memory for this method at this size")

    def _on_record(self, name: str, record: StepRecord) -> bool:
        psnr = record.psnr if record.psnr is not None else math.nan
        self.point.emit(name, int(record.t), float(psnr), float(record.extra.get("loss", math.nan)))
        if record.image is not None and (record.is_last or self._pacer.ready()):
            self.frame.emit(name, int(record.t), display_copy(record.image))
        return not self._stop.is_set()


class CompareController(ThreadedController):
    """Owns one comparison's worker and thread and forwards its signals; one comparison at a time."""

    methodStarted = Signal(str)
    point = Signal(str, int, float, float)
    frame = Signal(str, int, object)
    methodFinished = Signal(str, object)
    busy_message = "a comparison is already running"

    def start(self, job: CompareJob, *, max_fps: float = 10.0) -> CompareWorker:
        self._ensure_idle()
        worker = CompareWorker(job, max_fps=max_fps)
        self._launch(worker, "priorstudio-compare", ("methodStarted", "point", "frame", "methodFinished"))
        return worker
