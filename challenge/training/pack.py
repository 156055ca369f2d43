"""M networks of one architecture as one network: grouped convolutions, one channel block per model.

A small ResNet at 24-32 px keeps a CPU core (or a GPU) waiting on per-op overhead. Packed, model m
owns channels m*C ... (m+1)*C - 1 of every layer: a convolution becomes one convolution of M times
the groups, a BatchNorm one BatchNorm of M times the channels (so each model keeps its own batch
statistics and running buffers, as alone), a Linear layer one batched matmul. Nothing mixes the
blocks, so each model computes what it computes alone (the last bits aside: other kernels), and an
elementwise optimiser (Adam, SGD) on the packed parameters is that optimiser on each model's.
The input is the M models' own images side by side in the channel dimension: [B, M * 3, H, W].
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from challenge.errors import ChallengeError

# Layers that act on each channel alone (or hold no state), so that they need no change when packed.
CHANNELWISE = (
    nn.ReLU,
    nn.Identity,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Flatten,
)


class PackedLinear(nn.Module):
    """M Linear layers as one batched matmul: [B, M * in] -> [B, M * out]."""

    def __init__(self, layers: list[nn.Linear]) -> None:
        super().__init__()
        self.m = len(layers)
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))  # [M, out, in]
        bias = [layer.bias for layer in layers]
        self.bias = nn.Parameter(torch.stack([b.detach() for b in bias])) if bias[0] is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.m == 1:  # nn.Linear's own kernels: a batched matmul of one model rounds otherwise on some CPUs
            return nn.functional.linear(x, self.weight[0], None if self.bias is None else self.bias[0])
        b = x.shape[0]
        per_model = x.reshape(b, self.m, -1).transpose(0, 1)  # [M, B, in]
        out = (
            torch.baddbmm(self.bias.unsqueeze(1), per_model, self.weight.transpose(1, 2))
            if self.bias is not None
            else torch.bmm(per_model, self.weight.transpose(1, 2))
        )
        return out.transpose(0, 1).reshape(b, -1)


def pack_nets(nets: list[nn.Module], input_shape: tuple[int, int, int]) -> nn.Module:
    """One network computing all of `nets` (same architecture): input [B, M * C, H, W], output [B, M * classes].

    Checked once on random images against the nets themselves, so an architecture whose forward mixes
    channels some other way (a reshape, attention, a norm over channels) is refused, never trained wrongly.
    """
    packed = copy.deepcopy(nets[0])
    named = [dict(net.named_modules()) for net in nets]
    for name, module in list(packed.named_modules()):
        layers = [n[name] for n in named]
        if isinstance(module, (nn.Conv2d, nn.BatchNorm2d, nn.Linear)):
            _replace(packed, name, _packed_layer(layers))
        elif not any(module.children()) and not isinstance(module, CHANNELWISE) and not _idle_dropout(module):
            raise _unpackable(f"its layer {name} ({type(module).__name__}) mixes or draws across models")
    if float(getattr(nets[0], "drop_rate", 0.0) or 0.0) > 0:
        raise _unpackable("it draws dropout masks (model.net.kwargs.drop_rate > 0), which a pack would draw otherwise")
    _check_same_outputs(packed, nets, input_shape)
    return packed


def unpacked_state(packed: nn.Module, template: nn.Module, index: int) -> dict[str, torch.Tensor]:
    """Model `index`'s state dict, in `template`'s shapes (the architecture as a submission receives it)."""
    state, out = packed.state_dict(), {}
    for key, like in template.state_dict().items():
        value = state[key]
        if value.shape == like.shape:  # BatchNorm's num_batches_tracked: every model saw the same batches
            out[key] = value.clone()
        elif value.dim() == like.dim() + 1:  # PackedLinear: [M, ...]
            out[key] = value[index].clone()
        else:  # convolutions and BatchNorm: the index-th block of the first dimension
            n = like.shape[0]
            out[key] = value[index * n : (index + 1) * n].clone()
    return out


def side_by_side(images: list[torch.Tensor]) -> torch.Tensor:
    """Each model's batch [B, C, H, W] -> the packed input [B, M * C, H, W]."""
    return torch.cat(images, dim=1)


def per_model(logits: torch.Tensor, m: int) -> torch.Tensor:
    """Packed output [B, M * classes] -> [M, B, classes]."""
    return logits.reshape(logits.shape[0], m, -1).transpose(0, 1)


def _packed_layer(layers: list[nn.Module]) -> nn.Module:
    first, m = layers[0], len(layers)
    if isinstance(first, nn.Linear):
        return PackedLinear(layers)
    if isinstance(first, nn.Conv2d):
        out: nn.Module = nn.Conv2d(
            m * first.in_channels,
            m * first.out_channels,
            first.kernel_size,
            first.stride,
            first.padding,
            first.dilation,
            m * first.groups,
            first.bias is not None,
            first.padding_mode,
        )
    else:
        out = nn.BatchNorm2d(m * first.num_features, first.eps, first.momentum, first.affine, first.track_running_stats)
    with torch.no_grad():
        for key, value in out.state_dict().items():
            parts = [layer.state_dict()[key] for layer in layers]
            value.copy_(parts[0] if value.dim() == 0 else torch.cat(parts))
    return out


def _replace(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, attr, module)


def _idle_dropout(module: nn.Module) -> bool:
    return isinstance(module, nn.Dropout) and module.p == 0


def _check_same_outputs(packed: nn.Module, nets: list[nn.Module], input_shape: tuple[int, int, int]) -> None:
    """The packed network's outputs are the nets' own on random images (eval mode: nothing is updated)."""
    images = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0))  # not the global stream
    modes = [net.training for net in (packed, *nets)]
    with torch.no_grad():
        packed.eval()
        got = per_model(packed(side_by_side([images] * len(nets))), len(nets))
        want = torch.stack([net.eval()(images) for net in nets])
    for net, mode in zip((packed, *nets), modes):
        net.train(mode)
    if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-3, atol=1e-4):
        raise _unpackable("the packed network's outputs differ from the models' own")


def _unpackable(why: str) -> ChallengeError:
    return ChallengeError(f"this model cannot be trained packed: {why}; set pool.pack=1")
