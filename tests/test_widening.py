"""Growing a UNet: the wider network computes the same function and stays bias-free."""

from __future__ import annotations

import pytest
import torch

from priorstudio.core.denoisers.architectures import BiasFreeUNet
from priorstudio.core.denoisers.widening import can_grow, can_widen, deepen_unet, grow_unet, widen_unet


def _trained_like(norm: bool) -> BiasFreeUNet:
    """A small UNet with non-trivial norm statistics, as a trained one would have."""
    torch.manual_seed(3)
    net = BiasFreeUNet(3, (8, 16, 24), norm=norm)
    for name, buf in net.named_buffers():
        if name.endswith("running_sd"):
            buf.uniform_(0.5, 2.0)
    for name, p in net.named_parameters():
        if name.endswith("gamma"):
            p.data.uniform_(0.5, 2.0)
    return net.eval()


@pytest.mark.parametrize("norm", [False, True])
def test_grown_network_gives_the_same_output(norm: bool) -> None:
    old = _trained_like(norm)
    new = widen_unet(old, (16, 20, 24)).eval()
    assert new.config["widths"] == [16, 20, 24]
    assert sum(p.numel() for p in new.parameters()) > sum(p.numel() for p in old.parameters())
    y = torch.rand(2, 3, 27, 35)  # odd size: the padding path too
    with torch.no_grad():
        assert torch.allclose(new(y), old(y), atol=1e-6)


def test_new_channels_carry_signal_and_learn() -> None:
    """Fresh channels are random (not dead), and one gradient step reaches the weights that read them."""
    old = _trained_like(False)
    new = widen_unet(old, (12, 16, 24))
    first = new.encoders[0][0].weight
    assert first[8:].abs().sum() > 0  # new output channels have a fresh initialisation
    assert new.encoders[0][2].weight[:8, 8:].abs().sum() == 0  # old outputs ignore them for now
    y = torch.rand(1, 3, 16, 16)
    loss = (new(y) - y * 0.9).pow(2).mean()
    loss.backward()
    assert new.encoders[0][2].weight.grad[:8, 8:].abs().sum() > 0


def test_homogeneity_survives_growing() -> None:
    new = widen_unet(_trained_like(True), (16, 16, 32)).eval()
    y = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(new(2.5 * y), 2.5 * new(y), atol=1e-5)


def test_same_seed_same_growth_and_refusals() -> None:
    old = _trained_like(False)
    a, b = widen_unet(old, (12, 16, 24), seed=1), widen_unet(old, (12, 16, 24), seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    state = torch.random.get_rng_state()
    widen_unet(old, (12, 16, 24), seed=2)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's random stream is untouched
    assert not can_widen([8, 16, 24], [8, 16])
    assert not can_widen([8, 16, 24], [4, 16, 24])
    with pytest.raises(ValueError, match="cannot grow"):
        widen_unet(old, (4, 16, 24))


@pytest.mark.parametrize("norm", [False, True])
def test_deepened_network_gives_the_same_output(norm: bool) -> None:
    """New tail layers start as identities (Dirac kernels after a ReLU): the output does not change."""
    old = _trained_like(norm)
    new = deepen_unet(old, 2).eval()
    assert new.config["tail"] == 2 and len([m for m in new.tail if isinstance(m, torch.nn.Conv2d)]) == 2
    y = torch.rand(2, 3, 27, 35)
    with torch.no_grad():
        assert torch.allclose(new(y), old(y), atol=1e-6)
        assert torch.allclose(new(2.5 * y), 2.5 * new(y), atol=1e-5)  # still bias-free


def test_new_tail_layers_learn() -> None:
    new = deepen_unet(_trained_like(False), 1)
    y = torch.rand(1, 3, 16, 16)
    (new(y) - y * 0.9).pow(2).mean().backward()
    assert new.tail[0].weight.grad.abs().sum() > 0


def test_widen_and_deepen_together_and_again() -> None:
    """Grow widths and tail at once; a deepened network can be widened (its tail too) and deepened again."""
    old = _trained_like(False)
    y = torch.rand(1, 3, 20, 24)
    once = grow_unet(old, {"widths": [12, 16, 24], "tail": 1}, seed=2).eval()
    twice = grow_unet(once, {"widths": [16, 16, 32], "tail": 3}, seed=3).eval()
    assert twice.config == {"channels": 3, "widths": [16, 16, 32], "norm": False, "tail": 3}
    with torch.no_grad():
        ref = old(y)
        assert torch.allclose(once(y), ref, atol=1e-6)
        assert torch.allclose(twice(y), ref, atol=1e-5)


def test_growing_refuses_shallower_or_narrower() -> None:
    assert can_grow({"widths": [8, 16]}, {"widths": [8, 16], "tail": 2})
    assert not can_grow({"widths": [8, 16], "tail": 2}, {"widths": [8, 16], "tail": 1})
    assert not can_grow({"widths": [8, 16]}, {"widths": [4, 16], "tail": 1})
    with pytest.raises(ValueError, match="tail layers"):
        deepen_unet(deepen_unet(_trained_like(False), 2), 1)
