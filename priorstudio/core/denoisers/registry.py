"""Bundled weights by name, loaded safely.

A weights file is a plain dict saved with ``torch.save`` and read with ``weights_only=True`` — only
tensors, numbers, strings, lists and dicts; a file that tries to unpickle code is refused. Layout:

    {"format": "priorstudio-denoiser", "format_version": 1, "arch": "unet" | "bfcnn",
     "arch_config": {...}, "state_dict": {...}, "state_sha256": "...", "training": {...}, "validation": {...}}

``state_sha256`` is a checksum of the tensors: the zip archive torch writes does not check its stored
members, so a file damaged inside its tensor data would otherwise load and denoise with garbage weights.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from priorstudio.core.denoisers.architectures import ARCHITECTURES, build_network
from priorstudio.core.denoisers.inference import Denoiser
from priorstudio.core.errors import WeightsError
from priorstudio.resources import resources_dir

FORMAT = "priorstudio-denoiser"
FORMAT_VERSION = 1


def models_dir() -> Path:
    return resources_dir() / "models"


def available_models() -> dict[str, Path]:
    """Bundled model names (file stems) → paths, e.g. ``{"unet-gray": …/unet-gray.pt}``."""
    folder = models_dir()
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.glob("*.pt"))}


def default_model_name(channels: int) -> str:
    """The bundled model used when none is named: the gray or the color one."""
    wanted = "gray" if channels == 1 else "color"
    names = [n for n in available_models() if n.endswith(wanted)]
    if not names:
        raise WeightsError(f"no bundled {wanted} denoiser found in {models_dir()}")
    preferred = [n for n in names if n.startswith("unet")]
    return (preferred or names)[0]


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes: equal digests mean bit-identical weights."""
    h = hashlib.sha256()
    for name, v in sorted(state.items()):
        t = v.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def pack_weights(net: nn.Module, **metadata: Any) -> dict[str, Any]:
    """The dict that :func:`save_weights` writes: architecture, config, weights and metadata."""
    arch = getattr(net, "arch_name", None)
    if arch not in ARCHITECTURES:
        raise ValueError(f"cannot save a network of unknown architecture {type(net).__name__}")
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "arch_config": dict(net.config),  # type: ignore[arg-type]
        "state_dict": state,
        "state_sha256": state_digest(state),
        **metadata,
    }


def save_weights(path: str | Path, net: nn.Module, **metadata: Any) -> None:
    """Write a weights file atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(pack_weights(net, **metadata), tmp)
    tmp.replace(path)


def _unpickle_detail(exc: Exception) -> str:
    """What the file tried to load, from torch's refusal, without its advice to load it unsafely.

    torch's message explains how to bypass the check (``weights_only=False``) and carries terminal escape
    codes; neither belongs in front of a user who was just protected from a file that runs code.
    """
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    found = re.search(r"Unsupported (global|operand)[^.\n]*", text)
    return f": {found.group(0).strip()}" if found else ""


def load_weights_file(path: str | Path) -> dict[str, Any]:
    """Read and validate a weights file; raise :class:`WeightsError` with a clear message otherwise."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"weights file not found: {path}")
    if path.stat().st_size == 0:
        raise WeightsError(f"weights file is empty: {path}")
    if not zipfile.is_zipfile(path):  # every torch.save file is a zip archive; anything else is damaged
        raise WeightsError(f"weights file {path.name} is corrupt or truncated (not a complete weights archive)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(
            f"refused to load {path.name}: it contains objects other than plain weights "
            f"(only tensors, numbers and strings are accepted){_unpickle_detail(exc)}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError) as exc:
        raise WeightsError(f"weights file {path.name} is corrupt or truncated ({type(exc).__name__}: {exc})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise WeightsError(f"{path.name} is not a PriorStudio denoiser file (missing format tag '{FORMAT}')")
    if blob.get("format_version") != FORMAT_VERSION:
        raise WeightsError(f"{path.name} has format version {blob.get('format_version')}, expected {FORMAT_VERSION}")
    if blob.get("arch") not in ARCHITECTURES:
        raise WeightsError(f"{path.name} names an unknown architecture {blob.get('arch')!r}")
    if not isinstance(blob.get("state_dict"), dict) or not isinstance(blob.get("arch_config"), dict):
        raise WeightsError(f"{path.name} lacks its weights or architecture configuration")
    expected = blob.get("state_sha256")
    if expected is not None:  # files written before checksums existed load without one
        if not all(isinstance(v, torch.Tensor) for v in blob["state_dict"].values()):
            raise WeightsError(f"{path.name} holds something other than tensors in its weights")
        if state_digest(blob["state_dict"]) != expected:
            raise WeightsError(
                f"weights file {path.name} is corrupt: its weights do not match the checksum they were saved "
                "with (the file was damaged after it was written); download or copy it again"
            )
    return blob


def network_from_blob(blob: dict[str, Any], source: str = "weights") -> nn.Module:
    """Build the network a weights dict describes and load its weights, strictly."""
    try:
        with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten: leave the caller's RNG be
            net = build_network(blob["arch"], blob["arch_config"])
    except (TypeError, ValueError, RuntimeError) as exc:  # e.g. a negative width: torch cannot make the tensor
        raise WeightsError(f"{source}: invalid architecture configuration ({exc})") from None
    problem = _mismatch(net.state_dict(), blob["state_dict"])
    if problem:
        raise WeightsError(f"{source}: weights do not match the architecture ({problem})")
    try:
        net.load_state_dict(blob["state_dict"], strict=True)
    except RuntimeError as exc:  # anything the check above did not foresee: torch's own words, last line
        last = str(exc).strip().splitlines()[-1].strip()
        raise WeightsError(f"{source}: weights do not match the architecture ({last})") from None
    return net.eval()


def _mismatch(want: dict[str, Any], have: dict[str, Any]) -> str:
    """What keeps ``have`` from loading into a network whose own weights are ``want``: the first few missing,
    unexpected and wrongly shaped tensors by name ("" when it loads)."""

    def names(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

    parts = []
    missing = [k for k in want if k not in have]
    unexpected = [k for k in have if k not in want]
    if missing:
        parts.append(f"missing {names(missing)}")
    if unexpected:
        parts.append(f"unexpected {names(unexpected)}")
    shapes = []
    for key in want:
        value = have.get(key)
        if value is None:
            continue
        if not isinstance(value, torch.Tensor):
            shapes.append(f"{key} is a {type(value).__name__}, not a tensor")
        elif tuple(value.shape) != tuple(want[key].shape):
            shapes.append(f"{key} is {tuple(value.shape)}, the network's is {tuple(want[key].shape)}")
    if shapes:
        parts.append("; ".join(shapes[:3]) + (f" and {len(shapes) - 3} more" if len(shapes) > 3 else ""))
    return "; ".join(parts)


def load_denoiser(
    name_or_path: str | Path | None = None,
    *,
    channels: int | None = None,
    fast: bool = True,
    device: torch.device | str | None = None,
) -> Denoiser:
    """Load a bundled model by name (``"unet-gray"``) or any weights file by path.

    With no name, the default bundled model for ``channels`` (1 or 3) is used. If ``channels`` is given and
    the model was trained for a different number of channels, the load is refused.
    """
    if name_or_path is None:
        name_or_path = default_model_name(channels or 1)
    bundled = available_models()
    key = str(name_or_path)
    if key in bundled:
        path = bundled[key]
    else:
        path = Path(key)
        if not path.exists() and path.suffix != ".pt":
            known = ", ".join(bundled) or "none"
            raise WeightsError(f"unknown model {key!r}: not a bundled model ({known}) and not a file")
    blob = load_weights_file(path)
    net = network_from_blob(blob, source=path.name)
    if channels is not None and net.channels != channels:  # type: ignore[attr-defined]
        raise WeightsError(
            f"model {path.stem} works on {net.channels}-channel images, but the image has {channels} "  # type: ignore[attr-defined]
            "channel(s); pick a gray model for gray images and a color model for color ones"
        )
    info = {k: blob[k] for k in ("training", "validation", "description") if k in blob}
    return Denoiser(net, name=path.stem, fast=fast, device=device, info=info)
