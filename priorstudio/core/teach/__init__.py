"""Teach and inspect: see what the prior inside a denoiser knows.

- :mod:`.history` — a bounded, evenly thinned history of a run's frames, for scrubbing and replay.
- :mod:`.animation` — export a history as GIF / WebP / MP4 with step and σ_t burned in, or a filmstrip.
- :mod:`.inspector` — adaptive filters (Jacobian rows), singular values and effective dimensionality of
  the locally linear denoiser D(y) = A(y)y, and the score image D(y) − y.
- :mod:`.pixel` — what the inspector shows for one clicked pixel, computed on a window around it.
- :mod:`.posterior` — K samples for one measurement → mean and per-pixel standard deviation.
- :mod:`.game` — "Real or sampled?": the Turing test of the prior, with an honest score.
- :mod:`.explain` — Miyasawa's relation and the update rule with a step's numbers filled in.

All of it is Qt-free; the widgets in ``priorstudio.gui.teach`` only display it.
"""
