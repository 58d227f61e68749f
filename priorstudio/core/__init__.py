"""The engine: operators, denoisers, samplers, metrics, image I/O. No Qt imports in here."""
