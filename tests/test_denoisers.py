"""Bias-free architectures, the fast path and the weights registry."""

from __future__ import annotations

import pickle

import pytest
import torch

from priorstudio.core.denoisers import BFCNN, BiasFreeUNet, Denoiser, load_denoiser, load_weights_file
from priorstudio.core.denoisers.architectures import BiasFreeBatchNorm, count_parameters
from priorstudio.core.denoisers.inference import (
    ConvReLU,
    fold_batchnorm,
    fuse_conv_relu,
    fused_conv_relu_available,
)
from priorstudio.core.denoisers.registry import save_weights
from priorstudio.core.errors import WeightsError


def _randomise_norms(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every bias-free norm non-trivial statistics, as a trained network has."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, BiasFreeBatchNorm):
            m.gamma.data = 0.5 + torch.rand(m.gamma.shape, generator=g)
            m.running_sd.data = 0.5 + torch.rand(m.running_sd.shape, generator=g)
    return net.eval()


NETS = {
    "bfcnn-gray": lambda: BFCNN(1, width=16, depth=6),
    "bfcnn-color": lambda: BFCNN(3, width=16, depth=6),
    "unet-gray": lambda: BiasFreeUNet(1, (8, 16, 24)),
    "unet-color-norm": lambda: BiasFreeUNet(3, (8, 16), norm=True),
    "unet-gray-tail": lambda: BiasFreeUNet(1, (16, 24), tail=2),
}


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("alpha", [0.1, 3.7])
def test_bias_free_means_homogeneous(name: str, alpha: float) -> None:
    torch.manual_seed(1)
    net = _randomise_norms(NETS[name]())
    y = torch.rand(2, net.channels, 21, 19)
    with torch.no_grad():
        lhs, rhs = net(alpha * y), alpha * net(y)
    assert torch.allclose(lhs, rhs, rtol=1e-4, atol=1e-6 * alpha)
    # …and not trivially so: the network must actually change its input
    assert (net(y) - y).abs().max() > 1e-3


def test_a_bias_breaks_homogeneity() -> None:
    """The homogeneity test is able to fail: one bias term is enough to break it."""
    torch.manual_seed(1)
    net = BFCNN(1, width=16, depth=6).eval()
    net.body[0].bias = torch.nn.Parameter(torch.full((16,), 0.1))
    y = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(net(3 * y), 3 * net(y), rtol=1e-4, atol=1e-5)


def test_reference_bfcnn_size() -> None:
    assert 660_000 < count_parameters(BFCNN(1)) < 670_000


@pytest.mark.parametrize("name", sorted(NETS))
def test_fast_path_agrees_with_plain(name: str) -> None:
    torch.manual_seed(2)
    net = _randomise_norms(NETS[name]())
    y = torch.rand(2, net.channels, 32, 30)
    plain = Denoiser(net, fast=False, device="cpu")(y)
    fast = Denoiser(net, fast=True, device="cpu")(y)
    tol = 3e-2 if Denoiser(net, fast=True, device="cpu").bf16 else 1e-4
    assert (plain - fast).abs().max() <= tol * plain.abs().max()
    forced_bf16 = Denoiser(net, fast=True, device="cpu", bf16=True)(y)
    assert (plain - forced_bf16).abs().max() <= 3e-2 * plain.abs().max()


def test_folding_removes_norms_exactly() -> None:
    net = _randomise_norms(BFCNN(1, width=8, depth=5))
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, BiasFreeBatchNorm) for m in folded.modules())
    y = torch.rand(1, 1, 12, 12)
    with torch.no_grad():
        assert torch.allclose(folded(y), net(y), atol=1e-5)


@pytest.mark.parametrize("name", sorted(NETS))
def test_fusing_relu_into_convolutions_changes_nothing(name: str) -> None:
    """Every Conv→ReLU pair becomes one ConvReLU with the same weight names; fp32 and bf16 results agree."""
    torch.manual_seed(3)
    folded = fold_batchnorm(_randomise_norms(NETS[name]()))
    fused = fuse_conv_relu(fold_batchnorm(_randomise_norms(NETS[name]())))
    fused.load_state_dict(folded.state_dict())  # same keys, or this raises
    n_relu = sum(isinstance(m, torch.nn.ReLU) for m in folded.modules())
    assert sum(isinstance(m, ConvReLU) for m in fused.modules()) == n_relu > 0
    assert not any(isinstance(m, torch.nn.ReLU) for m in fused.modules())
    y = torch.rand(2, folded.channels, 23, 17).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        assert torch.allclose(fused(y), folded(y), atol=1e-5, rtol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            a, b = fused(y).float(), folded(y).float()
    assert (a - b).abs().max() <= 1e-2 * b.abs().max()


def test_fused_convolutions_still_differentiate() -> None:
    """Under autograd (the inspector's Jacobians) a ConvReLU is relu(conv(x)), with the same gradients."""
    torch.manual_seed(4)
    folded = fold_batchnorm(_randomise_norms(BiasFreeUNet(1, (8, 16, 24))))
    fused = fuse_conv_relu(fold_batchnorm(_randomise_norms(BiasFreeUNet(1, (8, 16, 24)))))
    fused.load_state_dict(folded.state_dict())
    y = torch.rand(1, 1, 16, 16)
    grads = []
    for net in (folded, fused):
        x = y.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(net(x).square().sum(), x)
        grads.append(g)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_fused_path_is_used_and_follows_weight_changes() -> None:
    """The fused primitive is really taken on this CPU, and its cached bf16 weights follow edits."""
    if not fused_conv_relu_available():
        pytest.skip("this PyTorch build has no oneDNN convolution-with-ReLU primitive")
    conv = torch.nn.Conv2d(3, 5, 3, padding=1, bias=False)
    fused = ConvReLU(conv)
    x = torch.randn(1, 3, 8, 8)
    calls = []
    real = torch.ops.mkldnn._convolution_pointwise
    with torch.inference_mode():
        try:
            torch.ops.mkldnn._convolution_pointwise = lambda *a: calls.append(1) or real(*a)
            fused(x)
        finally:
            torch.ops.mkldnn._convolution_pointwise = real
        assert calls
        with torch.autocast("cpu", dtype=torch.bfloat16):
            before = fused(x).float()
        with torch.no_grad():
            conv.weight.mul_(2)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            after = fused(x).float()
    assert torch.allclose(after, 2 * before, rtol=2e-2, atol=1e-2)


def test_cached_weights_follow_a_new_weight_tensor() -> None:
    """A weight replaced through ``.data`` (same version counter, new storage) is cast again."""
    conv = torch.nn.Conv2d(3, 5, 3, padding=1, bias=False)
    fused = ConvReLU(conv)
    x = torch.randn(1, 3, 8, 8)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        before = fused(x).float()
    conv.weight.data = conv.weight.detach() * 2
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        after = fused(x).float()
    assert torch.allclose(after, 2 * before, rtol=2e-2, atol=1e-2)


def test_forward_mode_derivatives_through_the_fast_network_are_the_plain_ones() -> None:
    """Outside inference mode the fused primitive is not taken: it would drop a JVP's tangent silently."""
    torch.manual_seed(5)
    net = BiasFreeUNet(1, (8, 16), tail=1)
    fast = Denoiser(net, fast=True, device="cpu").differentiable()
    plain = Denoiser(net, fast=False, device="cpu").differentiable()
    y, v = torch.rand(1, 1, 12, 12), torch.randn(1, 1, 12, 12)
    _, jv_fast = torch.func.jvp(fast, (y,), (v,))
    _, jv_plain = torch.func.jvp(plain, (y,), (v,))
    assert torch.allclose(jv_fast, jv_plain, atol=1e-5)
    assert not torch.allclose(jv_fast, v, atol=1e-3)  # not the tangent passed straight through


def test_building_a_denoiser_leaves_the_global_random_stream_alone(tmp_path) -> None:
    """Loading replaces the initial weights: drawing them would shift the caller's seeded noise."""
    path = tmp_path / "m.pt"
    save_weights(path, BiasFreeUNet(1, (8, 16), tail=1), training={"steps": 1})
    torch.manual_seed(0)
    expected = torch.rand(3)
    for fast in (True, False):
        torch.manual_seed(0)
        load_denoiser(path, channels=1, fast=fast, device="cpu")
        assert torch.equal(torch.rand(3), expected)


def test_denoiser_checks_channels() -> None:
    d = Denoiser(BiasFreeUNet(1, (8, 16)), fast=False, device="cpu")
    with pytest.raises(ValueError, match="1-channel"):
        d(torch.rand(1, 3, 16, 16))
    assert d(torch.rand(1, 16, 16)).shape == (1, 16, 16)


def test_unet_handles_odd_and_tiny_sizes() -> None:
    d = Denoiser(BiasFreeUNet(1, (8, 16, 24, 32)), fast=True, device="cpu")
    for h, w in [(1, 1), (3, 50), (17, 23)]:
        assert d(torch.rand(1, 1, h, w)).shape == (1, 1, h, w)


# -- registry -------------------------------------------------------------------------------------
def test_weights_round_trip(tmp_path) -> None:
    net = _randomise_norms(BiasFreeUNet(3, (8, 16), norm=True))
    path = tmp_path / "m.pt"
    save_weights(path, net, training={"steps": 3}, validation={"psnr_25": 20.0})
    d = load_denoiser(path, channels=3, fast=False, device="cpu")
    y = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(d(y), net(y), atol=1e-6)
    assert d.info["validation"]["psnr_25"] == 20.0
    with pytest.raises(WeightsError, match="3-channel"):
        load_denoiser(path, channels=1)


def test_registry_refuses_bad_files(tmp_path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        load_weights_file(tmp_path / "missing.pt")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(WeightsError, match="empty"):
        load_weights_file(empty)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a zip file at all" * 10)
    with pytest.raises(WeightsError, match="corrupt"):
        load_weights_file(garbage)

    good = tmp_path / "good.pt"
    save_weights(good, BiasFreeUNet(1, (8, 16)))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(WeightsError, match="corrupt or truncated"):
        load_weights_file(truncated)

    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(WeightsError, match="not a PriorStudio"):
        load_weights_file(foreign)

    mismatched = tmp_path / "mismatched.pt"
    blob = torch.load(good, weights_only=True)
    blob["arch_config"]["widths"] = [8, 32]
    torch.save(blob, mismatched)
    with pytest.raises(WeightsError, match="do not match"):
        load_denoiser(mismatched)


class _Exploit:
    def __reduce__(self):
        return (print, ("this code must never run",))


def test_registry_refuses_pickled_code(tmp_path, capsys) -> None:
    evil = tmp_path / "evil.pt"
    torch.save({"format": "priorstudio-denoiser", "payload": _Exploit()}, evil)
    with pytest.raises(WeightsError, match="refused"):
        load_weights_file(evil)
    assert "must never run" not in capsys.readouterr().out
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(WeightsError):
        load_weights_file(raw)
    assert "must never run" not in capsys.readouterr().out


def test_unknown_model_name() -> None:
    with pytest.raises(WeightsError, match="unknown model"):
        load_denoiser("no-such-model")
