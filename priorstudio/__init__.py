"""PriorStudio: image restoration with the implicit prior of a blind, bias-free denoiser."""

__version__ = "0.1.0"
