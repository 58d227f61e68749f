"""Teaching widgets: prior-samples gallery, β comparison, "Real or sampled?", scrub/replay, posterior
mean/std, the denoiser inspector and the explain panel.

Each widget is self-contained (its own controls, its own background thread where it computes) and takes a
``denoiser_factory``: a callable ``(channels) -> Denoiser`` the host window supplies, so the widgets follow
whatever model the window has loaded. The numerics live in :mod:`priorstudio.core.teach`.
"""
