"""Exporting a run: animated GIF/WebP with step and σ burned in, a filmstrip PNG, MP4 when possible."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from priorstudio.core.errors import ParameterError, PriorStudioError
from priorstudio.core.teach.animation import (
    EncoderUnavailableError,
    export_animation,
    export_filmstrip,
    export_gif,
    export_mp4,
    export_webp,
    filmstrip_image,
    frame_label,
    mp4_encoder,
    render_frame,
    render_frames,
    tile,
)
from priorstudio.core.teach.history import FrameHistory


def _history(n=30, shape=(1, 16, 16), dtype="uint8") -> FrameHistory:
    h = FrameHistory(dtype=dtype)
    gen = torch.Generator().manual_seed(0)
    for t in range(1, n + 1):
        h.push(t, torch.rand(shape, generator=gen) * (1 - t / (n + 1)), {"sigma": 1.0 / t})
    return h


def _strip_has_text(img: Image.Image, image_height: int) -> bool:
    strip = np.asarray(img.convert("L"))[image_height:]
    return strip.size > 0 and strip.max() > 200 and np.median(strip) < 60


def test_label_of_one_sample_shows_its_own_sigma():
    h = FrameHistory()
    h.push(3, torch.zeros(2, 1, 4, 4), {"sigma": 0.5, "sigma_0": 0.25, "sigma_1": 0.75})
    batched = h.latest()
    assert frame_label(batched, 1) == "step 3   sigma 0.7500"
    assert frame_label(batched) == "step 3   sigma 0.5000"  # the whole batch: its mean
    assert frame_label(batched, 5) == "step 3   sigma 0.5000"  # not reported: the mean
    plain = FrameHistory()
    plain.push(1, torch.zeros(1, 4, 4))
    assert frame_label(plain.latest(), 0) == "step 1"


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_label_is_readable_on_dark_and_light_frames(value):
    h = FrameHistory()
    h.push(7, torch.full((1, 16, 16), value), {"sigma": 0.1234})
    frame = h.latest()
    assert frame_label(frame) == "step 7   sigma 0.1234"
    img = render_frame(frame, min_width=256)
    assert img.width == 256 and img.height > 256  # enlarged ×16, plus the label strip
    assert _strip_has_text(img, 256)
    # the picture itself is untouched by the label
    assert np.all(np.asarray(img)[:256] == round(value * 255))


def test_batches_tile_and_one_sample_can_be_picked():
    batch = np.stack([np.full((1, 4, 4), v, np.float32) for v in (0.0, 0.5, 1.0)])
    grid = tile(batch, gap=2)
    assert grid.shape == (1, 10, 10)
    h = FrameHistory()
    h.push(1, torch.from_numpy(batch), {"sigma": 0.5})
    one = render_frame(h.latest(), sample=2, min_width=8, label=False)
    assert one.size == (8, 8) and np.asarray(one).min() == 255
    with pytest.raises(ParameterError):
        render_frame(h.latest(), sample=3)


def test_gif_and_webp_round_trip(tmp_path):
    h = _history(30)
    gif = export_gif(h, tmp_path / "run.gif", fps=10)
    with Image.open(gif) as im:
        assert im.n_frames == len(h)
        assert im.info.get("loop") == 0
        durations = []
        for k in range(im.n_frames):
            im.seek(k)
            durations.append(im.info["duration"])
        assert durations[0] == 100 and durations[-1] == 2000
    webp = export_webp(h, tmp_path / "run.webp", max_frames=10)
    with Image.open(webp) as im:
        assert im.n_frames == 10 and im.mode in ("RGB", "RGBA")
    color = _history(5, shape=(3, 12, 12), dtype="float16")
    with Image.open(export_animation(color, tmp_path / "color.gif")) as im:
        assert im.n_frames == 5


def test_no_silent_overwrite(tmp_path):
    h = _history(3)
    path = export_gif(h, tmp_path / "a.gif")
    before = path.read_bytes()
    with pytest.raises((FileExistsError, PriorStudioError)):
        export_gif(_history(4), path)
    assert path.read_bytes() == before
    export_gif(_history(4), path, overwrite=True)
    assert path.read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gif"]  # no temporary files left behind


def test_filmstrip(tmp_path):
    h = _history(40)
    strip = filmstrip_image(h, 5)
    tiles = h.evenly_spaced(5)
    assert tiles[0].t == 1 and tiles[-1].t == 40
    assert strip.width == 5 * 160 + 4 * 8 and strip.height > 160
    two_rows = filmstrip_image(h, 6, columns=3)
    assert two_rows.width == 3 * 160 + 2 * 8 and two_rows.height > 2 * 160
    path = export_filmstrip(h, tmp_path / "strip.png", 4)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width == 4 * 160 + 3 * 8
    with pytest.raises(ParameterError):
        filmstrip_image(FrameHistory(), 4)


def test_unknown_format_and_bad_fps(tmp_path):
    with pytest.raises(ParameterError):
        export_animation(_history(2), tmp_path / "run.avi")
    with pytest.raises(ParameterError):
        export_gif(_history(2), tmp_path / "run.gif", fps=0)


def test_mp4_writes_a_video_that_decodes_back(tmp_path):
    av = pytest.importorskip("av")  # the `video` extra (and `test`, so CI runs this)
    assert mp4_encoder() == "av"
    h = _history(6, shape=(1, 15, 15))  # odd size: the encoder path pads to even
    rendered = render_frames(h)
    path = export_animation(h, tmp_path / "run.mp4", fps=10, hold_last_s=1.0)
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == len(rendered) + 10 - 1  # every frame, then the last held for a second
    w, h_ = rendered[0].size
    assert decoded[0].shape == (h_ + h_ % 2, w + w % 2, 3)
    first = np.asarray(rendered[0].convert("RGB"), dtype=float)
    assert np.abs(decoded[0][:h_, :w] - first).mean() < 8  # H.264 is lossy, but it is the same picture
    last = np.asarray(rendered[-1].convert("RGB"), dtype=float)
    assert np.abs(decoded[-1][:h_, :w] - last).mean() < np.abs(decoded[0][:h_, :w] - last).mean()


def test_mp4_without_an_encoder_says_how_to_get_one(tmp_path, monkeypatch):
    from priorstudio.core.teach import animation

    monkeypatch.setattr(animation, "mp4_encoder", lambda: None)
    with pytest.raises(EncoderUnavailableError, match="pip install av"):
        export_mp4(_history(6, shape=(1, 15, 15)), tmp_path / "run.mp4")
    assert not (tmp_path / "run.mp4").exists()
