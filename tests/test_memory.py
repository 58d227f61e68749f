"""The run-memory estimate: formulas against measurements, the refusal message, the offered size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from priorstudio.core import memory
from priorstudio.core.denoisers import BFCNN, BiasFreeUNet, Denoiser
from priorstudio.core.denoisers.registry import pack_weights
from priorstudio.core.errors import ResourceLimitError
from priorstudio.core.memory import (
    MemoryEstimate,
    check_run_fits,
    denoiser_bytes_per_pixel,
    denoiser_values_per_pixel,
    estimate_run_memory,
    suggest_working_size,
)

# Peak activation values per pixel measured on this project's CPU (RSS high-water mark during one
# inference, glibc returning freed memory at once), batch 1, 512².
MEASURED = [
    ("bfcnn", {"channels": 1, "width": 64, "depth": 20}, True, 128.2),
    ("bfcnn", {"channels": 1, "width": 64, "depth": 20}, False, 192.0),
    ("bfcnn", {"channels": 3, "width": 64, "depth": 20}, True, 131.2),
    ("unet", {"channels": 1, "widths": [48, 96, 192, 256]}, True, 301.4),
    ("unet", {"channels": 1, "widths": [48, 96, 192, 256]}, False, 349.3),
    ("unet", {"channels": 3, "widths": [48, 96, 192, 256]}, True, 304.3),
    ("unet", {"channels": 1, "widths": [32, 64, 128, 256]}, True, 203.3),
    ("unet", {"channels": 1, "widths": [16, 32, 64]}, True, 98.7),
    ("unet", {"channels": 1, "widths": [64, 128]}, True, 352.7),
    ("unet", {"channels": 1, "widths": [64, 64, 64]}, True, 354.9),
]


@pytest.mark.parametrize(("arch", "config", "fast", "measured"), MEASURED)
def test_formula_matches_measurements(arch: str, config: dict, fast: bool, measured: float) -> None:
    assert denoiser_values_per_pixel(arch, config, fast=fast) == pytest.approx(measured, rel=0.05)


def test_model_forms_agree() -> None:
    """A network, its Denoiser and its weights dict give the same figure; plain costs more than fast."""
    net = BiasFreeUNet(1, (8, 16))
    fast = Denoiser(net, fast=True, device="cpu", bf16=False)
    plain = Denoiser(net, fast=False, device="cpu")
    assert denoiser_bytes_per_pixel(net) == denoiser_bytes_per_pixel(pack_weights(net))
    assert denoiser_bytes_per_pixel(fast) == denoiser_bytes_per_pixel(net)
    assert denoiser_bytes_per_pixel(plain) > denoiser_bytes_per_pixel(fast)
    # bf16 activations take half the bytes of fp32 ones (where the CPU runs the fast path in bf16)
    half = Denoiser(net, fast=True, device="cpu", bf16=True)
    assert denoiser_bytes_per_pixel(half) == pytest.approx(denoiser_bytes_per_pixel(fast) / 2)
    assert denoiser_bytes_per_pixel(BFCNN(1, width=64)) == pytest.approx(130 * 4)


def test_estimate_scales_with_pixels_batch_and_task() -> None:
    net = BiasFreeUNet(1)
    small = estimate_run_memory((1, 256, 256), net)
    big = estimate_run_memory((1, 512, 512), net)
    assert big.denoiser == pytest.approx(4 * small.denoiser, rel=1e-6)
    assert estimate_run_memory((1, 256, 256), net, batch=4).denoiser == pytest.approx(4 * small.denoiser, rel=1e-6)
    assert estimate_run_memory((1, 256, 256), net, task="compressive").operator > small.operator
    assert estimate_run_memory((1, 256, 256), net, history_bytes=10**8).total == small.total + 10**8
    # the default UNet on a 512² gray image: ~300 MB of activations, well under a GB in all
    assert 250 * 2**20 < big.denoiser < 450 * 2**20
    assert big.total < 2**30
    assert "denoiser" in big.describe()


def test_refusal_offers_a_size_that_fits() -> None:
    net = BiasFreeUNet(3)
    est = estimate_run_memory((3, 6000, 8000), net)
    available = 2 * 2**30
    with pytest.raises(ResourceLimitError) as info:
        check_run_fits(est, (6000, 8000), available=available)
    msg = str(info.value)
    assert "8000×6000" in msg and "available" in msg and "would fit at" in msg
    h, w = suggest_working_size((6000, 8000), est, int(available * memory.USABLE_SHARE))
    assert f"{w}×{h}" in msg
    assert h % 8 == 0 and w % 8 == 0 and abs(w / h - 8000 / 6000) < 0.02  # aspect ratio kept
    # the offered size really fits, and is not needlessly small
    fits = estimate_run_memory((3, h, w), net)
    check_run_fits(fits, (h, w), available=available)
    bigger = estimate_run_memory((3, h + 64, w + 64), net)
    assert bigger.total > available * memory.USABLE_SHARE * 0.97
    assert ResourceLimitError.exit_code == 6


def test_fits_returns_estimate_and_hopeless_case_says_so() -> None:
    est = estimate_run_memory((1, 64, 64), BiasFreeUNet(1, (8, 16)))
    assert check_run_fits(est, (64, 64), available=2**34) is est
    with pytest.raises(ResourceLimitError, match="close other programs or use a smaller model"):
        check_run_fits(est, (64, 64), available=2**20)
    huge = MemoryEstimate(pixels=100, denoiser=10**12, sampler=0, operator=0, history=0)
    assert suggest_working_size((10, 10), huge, 10**6) is None


def test_unknown_availability_does_not_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: None)
    est = estimate_run_memory((1, 10**5, 10**5), BiasFreeUNet(1))
    assert check_run_fits(est, (10**5, 10**5)) is est


def test_available_memory_is_read(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = tmp_path / "meminfo"
    info.write_text("MemTotal:       24684092 kB\nMemFree:  100 kB\nMemAvailable:   2000 kB\n")
    assert memory._meminfo_available(info) == 2000 * 1024
    info.write_text("garbage\n")
    assert memory._meminfo_available(info) is None
    if os.path.exists("/proc/meminfo"):
        avail = memory.available_bytes()
        assert avail is not None and avail > 0
        assert memory.current_rss_bytes() > 0


_MEASURE = textwrap.dedent(
    """
    import json, sys, torch
    from priorstudio.core.denoisers import BFCNN, BiasFreeUNet, Denoiser
    from priorstudio.core.memory import denoiser_bytes_per_pixel
    torch.set_num_threads(1)
    def status(field):
        for line in open('/proc/self/status'):
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    out = []
    for net in (BiasFreeUNet(1, (16, 32, 64)), BFCNN(1, width=32, depth=5)):
        d = Denoiser(net, fast=True, device='cpu', bf16=False)
        d(torch.rand(1, 1, 32, 32))
        y = torch.rand(1, 1, 384, 384)
        base = status('VmRSS')
        open('/proc/self/clear_refs', 'w').write('5')
        d(y)
        out.append(((status('VmHWM') - base) / y.numel(), denoiser_bytes_per_pixel(d)))
    print(json.dumps(out))
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's /proc peak-RSS reset")
def test_estimate_bounds_a_real_measurement() -> None:
    """Run real inferences in a fresh process and compare the peak RSS growth with the formula."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", _MEASURE], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    for measured, predicted in json.loads(res.stdout.strip().splitlines()[-1]):
        assert 0.8 * predicted <= measured <= 1.15 * predicted, (measured, predicted)
