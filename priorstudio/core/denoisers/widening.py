"""Grow a trained bias-free UNet into a wider or deeper one that computes exactly the same function.

Training a bigger network from scratch costs CPU-hours the trained one has already spent. Instead every new
channel is added so that nothing downstream reads it yet: the old weights are copied into the top-left block
of each new weight tensor, the new output channels get a fresh random initialisation (so they carry signal),
and the weights that would let an *old* output read a *new* input are zero. New full-resolution layers (the
``tail``) start as the identity: a Dirac kernel passes its input through, and the ReLU after it changes
nothing because what it reads has just come out of a ReLU. Either way the grown network's output is identical
at step 0, and fine-tuning lets the gradient decide how much to use the new capacity.

No bias is introduced, so the grown network is still bias-free (D(αy) = αD(y)).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from priorstudio.core.denoisers.architectures import BiasFreeBatchNorm, BiasFreeUNet


def can_widen(old_widths: list[int] | tuple[int, ...], new_widths: list[int] | tuple[int, ...]) -> bool:
    """Same number of levels and no level narrower than before."""
    return len(old_widths) == len(new_widths) and all(n >= o for o, n in zip(old_widths, new_widths))


def can_grow(old_config: dict, new_config: dict) -> bool:
    """``new_config`` is ``old_config`` widened and/or with more tail layers (never narrower or shallower)."""
    return can_widen(old_config["widths"], new_config["widths"]) and int(new_config.get("tail", 0)) >= int(
        old_config.get("tail", 0)
    )


def _index_map(old_groups: list[int], new_groups: list[int]) -> Tensor:
    """Where each old channel lands when a tensor made of concatenated groups is widened group by group."""
    out, base_new = [], 0
    for o, n in zip(old_groups, new_groups):
        out.extend(range(base_new, base_new + o))
        base_new += n
    return torch.tensor(out, dtype=torch.long)


def _graft_conv(new: nn.Conv2d, old: nn.Conv2d, in_map: Tensor) -> None:
    """Copy ``old`` into ``new``: old outputs read only old inputs (new inputs get weight 0)."""
    w = new.weight.data  # (out, in, k, k); new outputs keep their fresh initialisation
    n_out = old.weight.shape[0]
    w[:n_out].zero_()
    w[:n_out].index_copy_(1, in_map, old.weight.data)


def _graft_transposed(new: nn.ConvTranspose2d, old: nn.ConvTranspose2d) -> None:
    w = new.weight.data  # (in, out, k, k)
    n_in, n_out = old.weight.shape[:2]
    w[:, :n_out].zero_()
    w[:n_in, :n_out] = old.weight.data


def _graft_norm(new: BiasFreeBatchNorm, old: BiasFreeBatchNorm) -> None:
    n = old.gamma.shape[1]
    new.gamma.data[:, :n] = old.gamma.data
    new.running_sd[:, :n] = old.running_sd


def _graft_conv_stack(new: nn.Sequential, old: nn.Sequential, in_map: Tensor) -> None:
    first = True
    for n_mod, o_mod in zip(new, old):
        if isinstance(o_mod, nn.Conv2d):
            _graft_conv(n_mod, o_mod, in_map if first else torch.arange(o_mod.weight.shape[1]))
            first = False
        elif isinstance(o_mod, BiasFreeBatchNorm):
            _graft_norm(n_mod, o_mod)


@torch.no_grad()
def widen_unet(old: BiasFreeUNet, widths: tuple[int, ...] | list[int], *, seed: int = 0) -> BiasFreeUNet:
    """A wider copy of ``old`` with per-level ``widths`` that gives the same output for every input.

    ``seed`` fixes the random initialisation of the new channels.
    """
    old_widths = tuple(old.config["widths"])
    widths = tuple(int(w) for w in widths)
    if not can_widen(old_widths, widths):
        raise ValueError(f"cannot grow a UNet with widths {list(old_widths)} into {list(widths)}")
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        new = BiasFreeUNet(
            old.channels, widths, norm=bool(old.config.get("norm", False)), tail=int(old.config.get("tail", 0))
        )
    finally:
        torch.random.set_rng_state(state)

    cin_old = [old.channels]
    cin_new = [old.channels]
    for level, (n_enc, o_enc) in enumerate(zip(new.encoders, old.encoders)):
        _graft_conv_stack(n_enc, o_enc, _index_map(cin_old, cin_new))
        cin_old, cin_new = [old_widths[level]], [widths[level]]
    _graft_conv_stack(new.bottleneck, old.bottleneck, _index_map(cin_old, cin_new))
    for i, (n_up, o_up, n_dec, o_dec) in enumerate(zip(new.ups, old.ups, new.decoders, old.decoders)):
        level = len(widths) - 2 - i
        _graft_transposed(n_up, o_up)
        # the decoder reads cat([up(x), skip]): two groups, each widened on its own
        w_old, w_new = old_widths[level], widths[level]
        _graft_conv_stack(n_dec, o_dec, _index_map([w_old, w_old], [w_new, w_new]))
    _graft_conv_stack(new.tail, old.tail, torch.arange(old_widths[0]))
    _graft_conv(new.head, old.head, torch.arange(old_widths[0]))
    return new


@torch.no_grad()
def deepen_unet(old: BiasFreeUNet, tail: int) -> BiasFreeUNet:
    """A copy of ``old`` with ``tail`` full-resolution layers before its output; the new ones are identities."""
    have = int(old.config.get("tail", 0))
    if tail < have:
        raise ValueError(f"cannot grow a UNet with {have} tail layers into one with {tail}")
    norm = bool(old.config.get("norm", False))
    new = BiasFreeUNet(old.channels, tuple(old.config["widths"]), norm=norm, tail=tail)
    missing, unexpected = new.load_state_dict(old.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("tail.") for k in missing), (missing, unexpected)
    per_layer = 3 if norm else 2  # conv [, norm], relu
    for i in range(have, tail):
        nn.init.dirac_(new.tail[i * per_layer].weight)
        if norm:  # a fresh bias-free norm is the identity too (unit scale, unit running sd)
            layer_norm = new.tail[i * per_layer + 1]
            layer_norm.gamma.fill_(1.0)
            layer_norm.running_sd.fill_(1.0)
    return new


def grow_unet(old: BiasFreeUNet, config: dict, *, seed: int = 0) -> BiasFreeUNet:
    """Widen to ``config["widths"]``, then deepen to ``config.get("tail", 0)``: the same output throughout."""
    new = old
    if list(config["widths"]) != list(old.config["widths"]):
        new = widen_unet(new, config["widths"], seed=seed)
    if int(config.get("tail", 0)) != int(old.config.get("tail", 0)):
        new = deepen_unet(new, int(config.get("tail", 0)))
    return new
