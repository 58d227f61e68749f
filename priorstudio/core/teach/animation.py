"""Export a run's history as an animation (GIF, WebP, MP4) or a filmstrip PNG.

Each frame gets a label strip *below* the image — "step 37   sigma 0.2345" in white on near-black — so the
text is readable on light and dark images alike and never hides a pixel. Pillow's default font has no
Greek letters, hence "sigma". Small images are enlarged by an integer factor (nearest neighbour: pixels
stay crisp, which is what a teacher wants to show) until the label fits comfortably.

GIF and WebP are written by Pillow; MP4 needs an encoder that is not a dependency of PriorStudio: PyAV
(``pip install av``) or imageio-ffmpeg (``pip install imageio-ffmpeg``). :func:`mp4_encoder` says which one is
importable and :func:`export_mp4` raises :class:`EncoderUnavailableError` with that advice otherwise.

Files are written atomically and never silently replace an existing file (``overwrite=True`` to replace).
"""

from __future__ import annotations

import importlib.util
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from priorstudio.core.atomic import atomic_path, atomic_write_bytes
from priorstudio.core.errors import ParameterError, PriorStudioError
from priorstudio.core.teach.history import Frame, FrameHistory

STRIP_BG = 24  # near-black label strip
STRIP_FG = 255
GAP = 2  # pixels between the tiles of a batch
FILM_GAP = 8  # pixels between the frames of a filmstrip: wider, so a batched frame's tiles read as one frame


class EncoderUnavailableError(PriorStudioError):
    """No video encoder is installed for the requested format (exit code 1: install one, or pick GIF/WebP)."""


# -- rendering -------------------------------------------------------------------------------------------
def frame_label(frame: Frame, sample: int | None = None) -> str:
    """'step 37   sigma 0.2345' (σ left out when the method does not report it); with ``sample``, that
    sample's own σ_t when the batch reported it."""
    label = f"step {frame.t}"
    sigma = frame.sigma_of(sample)
    if math.isfinite(sigma):
        label += f"   sigma {sigma:.4f}"
    return label


def tile(images: np.ndarray, columns: int | None = None, gap: int = GAP, fill: float = 1.0) -> np.ndarray:
    """A batch (B, C, H, W) → one (C, H', W') grid image, ``gap`` pixels of ``fill`` between the tiles."""
    if images.ndim == 3:
        return images
    b, c, h, w = images.shape
    cols = columns or math.ceil(math.sqrt(b))
    rows = math.ceil(b / cols)
    out = np.full((c, rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap), fill, dtype=images.dtype)
    for k in range(b):
        r, q = divmod(k, cols)
        out[:, r * (h + gap) : r * (h + gap) + h, q * (w + gap) : q * (w + gap) + w] = images[k]
    return out


def to_pil(image: np.ndarray) -> Image.Image:
    """(C, H, W) float in [0, 1] → a Pillow image, 'L' for one channel and 'RGB' for three."""
    arr = np.rint(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    if arr.shape[0] == 1:
        return Image.fromarray(arr[0], mode="L")
    if arr.shape[0] == 3:
        return Image.fromarray(arr.transpose(1, 2, 0), mode="RGB")
    raise ParameterError(f"frames must have 1 or 3 channels, got {arr.shape[0]}")


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def enlarge(image: Image.Image, min_width: int) -> Image.Image:
    """Enlarge by an integer factor (nearest neighbour, crisp pixels) to at least ``min_width`` wide."""
    if min_width <= image.width:
        return image
    factor = math.ceil(min_width / image.width)
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)


def with_label(image: Image.Image, text: str, min_width: int = 0) -> Image.Image:
    """Enlarge ``image`` to at least ``min_width`` wide and add a label strip below it."""
    image = enlarge(image, min_width)
    size = max(10, min(28, image.width // 18))
    font = _font(size)
    strip_h = int(size * 1.6)
    out = Image.new(
        image.mode, (image.width, image.height + strip_h), STRIP_BG if image.mode == "L" else (STRIP_BG,) * 3
    )
    out.paste(image, (0, 0))
    draw = ImageDraw.Draw(out)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = max((image.width - (right - left)) // 2, 2)
    y = image.height + (strip_h - (bottom - top)) // 2 - top
    draw.text((x, y), text, font=font, fill=STRIP_FG if image.mode == "L" else (STRIP_FG,) * 3)
    return out


def render_frame(frame: Frame, *, sample: int | None = None, min_width: int = 256, label: bool = True) -> Image.Image:
    """One frame as a labelled Pillow image; a batched frame shows all its samples as a grid (or one)."""
    data = frame.image()
    if data.ndim == 4 and sample is not None:
        if not 0 <= sample < data.shape[0]:
            raise ParameterError(f"sample {sample} is not in this batch of {data.shape[0]}")
        data = data[sample]
    image = enlarge(to_pil(tile(data)), min_width)
    return with_label(image, frame_label(frame, sample)) if label else image


def _pick(history: FrameHistory | Sequence[Frame], max_frames: int) -> list[Frame]:
    if isinstance(history, FrameHistory):
        frames = history.evenly_spaced(max_frames)
    else:
        frames = list(history)
        if len(frames) > max_frames:
            idx = np.linspace(0, len(frames) - 1, max_frames).round().astype(int)
            frames = [frames[i] for i in dict.fromkeys(int(i) for i in idx)]
    if not frames:
        raise ParameterError("the run history is empty: there is nothing to export")
    return frames


def render_frames(
    history: FrameHistory | Sequence[Frame],
    *,
    max_frames: int = 200,
    sample: int | None = None,
    min_width: int = 256,
    label: bool = True,
) -> list[Image.Image]:
    """Up to ``max_frames`` labelled frames evenly spaced over the run (first and last included)."""
    return [render_frame(f, sample=sample, min_width=min_width, label=label) for f in _pick(history, max_frames)]


def _durations(n: int, fps: float, hold_last_s: float) -> list[int]:
    if fps <= 0 or fps > 100:
        raise ParameterError(f"frames per second must be in (0, 100], got {fps}")
    step = max(round(1000 / fps), 20)
    durations = [step] * n
    durations[-1] = max(step, int(hold_last_s * 1000))
    return durations


# -- animations ------------------------------------------------------------------------------------------
def encode_gif(frames: Sequence[Image.Image], fps: float = 15, hold_last_s: float = 2.0) -> bytes:
    buf = io.BytesIO()
    first, *rest = frames
    first.save(
        buf,
        format="GIF",
        save_all=True,
        append_images=rest,
        duration=_durations(len(frames), fps, hold_last_s),
        loop=0,
        disposal=1,
    )
    return buf.getvalue()


def encode_webp(frames: Sequence[Image.Image], fps: float = 15, hold_last_s: float = 2.0, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    rgb = [f.convert("RGB") for f in frames]
    first, *rest = rgb
    first.save(
        buf,
        format="WEBP",
        save_all=True,
        append_images=rest,
        duration=_durations(len(rgb), fps, hold_last_s),
        loop=0,
        quality=quality,
        method=4,
    )
    return buf.getvalue()


def export_gif(
    history: FrameHistory | Sequence[Frame],
    path: str | Path,
    *,
    fps: float = 15,
    hold_last_s: float = 2.0,
    max_frames: int = 200,
    sample: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the run as an animated GIF (loops forever, holds the last frame); returns the path."""
    frames = render_frames(history, max_frames=max_frames, sample=sample)
    return _write(path, encode_gif(frames, fps, hold_last_s), overwrite)


def export_webp(
    history: FrameHistory | Sequence[Frame],
    path: str | Path,
    *,
    fps: float = 15,
    hold_last_s: float = 2.0,
    max_frames: int = 200,
    sample: int | None = None,
    quality: int = 90,
    overwrite: bool = False,
) -> Path:
    """Write the run as an animated WebP (smaller than GIF, full colour); returns the path."""
    frames = render_frames(history, max_frames=max_frames, sample=sample)
    return _write(path, encode_webp(frames, fps, hold_last_s, quality), overwrite)


def mp4_encoder() -> str | None:
    """'av' (PyAV) or 'imageio-ffmpeg' when one is importable, else None."""
    if importlib.util.find_spec("av") is not None:
        return "av"
    if importlib.util.find_spec("imageio_ffmpeg") is not None:
        return "imageio-ffmpeg"
    return None


MP4_ADVICE = "MP4 export needs PyAV or imageio-ffmpeg: `pip install av` (or `pip install imageio-ffmpeg`)"


def export_mp4(
    history: FrameHistory | Sequence[Frame],
    path: str | Path,
    *,
    fps: float = 15,
    hold_last_s: float = 2.0,
    max_frames: int = 200,
    sample: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the run as H.264 MP4 (yuv420p, plays everywhere) with PyAV or imageio-ffmpeg."""
    encoder = mp4_encoder()
    if encoder is None:
        raise EncoderUnavailableError(f"{MP4_ADVICE}; GIF and WebP export work without it.")
    frames = render_frames(history, max_frames=max_frames, sample=sample)
    # yuv420p needs even sizes; repeat frames to hold the last one
    rgb = [np.asarray(_even(f.convert("RGB"))) for f in frames]
    fps_int = max(1, round(fps))
    rgb += [rgb[-1]] * max(0, int(hold_last_s * fps_int) - 1)
    target = Path(path)
    with atomic_path(target, overwrite=overwrite) as tmp:
        if encoder == "av":
            _write_mp4_av(tmp, rgb, fps_int)
        else:
            _write_mp4_imageio(tmp, rgb, fps_int)
    return target


def _even(image: Image.Image) -> Image.Image:
    w, h = image.width + image.width % 2, image.height + image.height % 2
    if (w, h) == image.size:
        return image
    out = Image.new("RGB", (w, h), (STRIP_BG,) * 3)
    out.paste(image, (0, 0))
    return out


def _write_mp4_av(path: Path, frames: list[np.ndarray], fps: int) -> None:
    import av

    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for arr in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_mp4_imageio(path: Path, frames: list[np.ndarray], fps: int) -> None:
    import imageio_ffmpeg

    h, w = frames[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(
        str(path), (w, h), fps=fps, codec="libx264", pix_fmt_out="yuv420p", output_params=["-f", "mp4"]
    )
    writer.send(None)
    for arr in frames:
        writer.send(np.ascontiguousarray(arr))
    writer.close()


ANIMATION_FORMATS = {".gif": export_gif, ".webp": export_webp, ".mp4": export_mp4}


def export_animation(history: FrameHistory | Sequence[Frame], path: str | Path, **options: object) -> Path:
    """Export by the file's suffix: .gif, .webp or .mp4."""
    suffix = Path(path).suffix.lower()
    try:
        exporter = ANIMATION_FORMATS[suffix]
    except KeyError:
        raise ParameterError(
            f"cannot export an animation as {suffix or 'a file without suffix'}: use .gif, .webp or .mp4"
        ) from None
    return exporter(history, path, **options)  # type: ignore[operator]


# -- filmstrip -------------------------------------------------------------------------------------------
def filmstrip_image(
    history: FrameHistory | Sequence[Frame],
    n: int = 8,
    *,
    columns: int | None = None,
    sample: int | None = None,
    min_width: int = 160,
) -> Image.Image:
    """``n`` evenly spaced frames side by side (wrapped after ``columns``), each labelled with step and σ."""
    if n < 1:
        raise ParameterError(f"a filmstrip needs at least one frame, got {n}")
    tiles = render_frames(history, max_frames=n, sample=sample, min_width=min_width)
    cols = columns or len(tiles)
    rows = math.ceil(len(tiles) / cols)
    w = max(t.width for t in tiles)
    h = max(t.height for t in tiles)
    mode = "RGB" if any(t.mode == "RGB" for t in tiles) else "L"
    white = 255 if mode == "L" else (255, 255, 255)
    sheet = Image.new(mode, (cols * w + (cols - 1) * FILM_GAP, rows * h + (rows - 1) * FILM_GAP), white)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        sheet.paste(t.convert(mode), (c * (w + FILM_GAP), r * (h + FILM_GAP)))
    return sheet


def export_filmstrip(
    history: FrameHistory | Sequence[Frame],
    path: str | Path,
    n: int = 8,
    *,
    columns: int | None = None,
    sample: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a filmstrip PNG of ``n`` evenly spaced frames; returns the path."""
    buf = io.BytesIO()
    filmstrip_image(history, n, columns=columns, sample=sample).save(buf, format="PNG")
    return _write(path, buf.getvalue(), overwrite)


def _write(path: str | Path, data: bytes, overwrite: bool) -> Path:
    target = Path(path)
    atomic_write_bytes(target, data, overwrite=overwrite)
    return target
