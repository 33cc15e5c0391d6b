"""DropBlock: dropout of contiguous square regions of a feature map.

Ghiasi, Lin & Le, "DropBlock: A regularization method for convolutional networks", NeurIPS 2018.
In training mode each channel of each example loses ``block_size × block_size`` squares whose
top-left corners are drawn i.i.d. with probability γ among the positions where a whole square
fits, γ chosen so that a fraction ``drop_prob`` of the activations is dropped on average (their
eq. 1)::

    γ = drop_prob / block_size² · H·W / ((H − block_size + 1)(W − block_size + 1))

and the survivors are rescaled by ``numel / kept`` so the expected activation is unchanged.
With ``block_size = 1`` it is ordinary (element-wise) dropout. In ``eval()`` mode it is the
identity. MetaOptNet (Lee et al. 2019) uses it in the last two blocks of its ResNet-12.

Randomness. Every mask is drawn from :attr:`DropBlock2d.generator` when one is set, so that a
training run is reproducible and resumes to the same result; :func:`reseed_drop_layers` (called
by the trainer before each step) gives every layer a generator on its input's device seeded
from the trainer's own generator, and sets the linear warm-up of the rate that Ghiasi et al.
recommend. Without a generator the global RNG is used, as :class:`torch.nn.Dropout` does.

Shapes: ``(N, C, H, W) -> (N, C, H, W)``; the block is clipped to ``min(H, W)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DropBlock2d", "drop_layers", "reseed_drop_layers"]


class DropBlock2d(nn.Module):
    """Drop ``block_size``-square regions with overall rate ``drop_prob × schedule``.

    ``schedule`` ∈ [0, 1] scales the rate (the warm-up, set by :func:`reseed_drop_layers` when
    ``warmup`` is true); ``generator`` is the source of the masks (``None``: the global RNG).
    """

    def __init__(self, drop_prob: float, block_size: int, warmup: bool = True) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"DropBlock drop_prob must be in [0, 1), got {drop_prob}")
        if block_size < 1:
            raise ValueError(f"DropBlock block_size must be ≥ 1, got {block_size}")
        self.drop_prob = drop_prob
        self.block_size = block_size
        self.warmup = warmup
        self.schedule = 1.0
        self.generator: torch.Generator | None = None

    @property
    def rate(self) -> float:
        """The drop rate in force now: ``drop_prob × schedule``."""
        return self.drop_prob * self.schedule

    def mask(self, shape: torch.Size, device: torch.device) -> Tensor:
        """A ``{0, 1}`` float mask of ``shape = (N, C, H, W)``; zeros form the dropped blocks."""
        n, c, h, w = shape
        b = min(self.block_size, h, w)
        gamma = self.rate / b**2 * (h * w) / ((h - b + 1) * (w - b + 1))
        u = torch.rand((n, c, h - b + 1, w - b + 1), generator=self.generator, device=device)
        centres = (u < gamma).float()
        # Each drawn centre blanks the b×b square it starts; pad so squares stay inside the map.
        centres = F.pad(centres, (b - 1, b - 1, b - 1, b - 1))
        blocks = F.max_pool2d(centres, kernel_size=b, stride=1)
        return 1.0 - blocks

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.rate == 0.0:
            return x
        if x.dim() != 4:
            raise ValueError(f"DropBlock2d expects (N, C, H, W) feature maps, got {tuple(x.shape)}")
        m = self.mask(x.shape, x.device).to(x.dtype)
        kept = m.sum().clamp_min(1.0)
        return x * m * (m.numel() / kept)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}, block_size={self.block_size}, warmup={self.warmup}"


def drop_layers(module: nn.Module) -> list[DropBlock2d]:
    """Every :class:`DropBlock2d` inside ``module``."""
    return [m for m in module.modules() if isinstance(m, DropBlock2d)]


def reseed_drop_layers(
    module: nn.Module, generator: torch.Generator, device: torch.device, schedule: float = 1.0
) -> None:
    """Give each DropBlock layer of ``module`` a fresh generator on ``device``, seeded from
    ``generator`` (so the masks follow from the caller's RNG state), and set the ``schedule``
    (clipped to [0, 1]) of those with ``warmup``. No-op, and no draw from ``generator``, without
    such layers.
    """
    layers = drop_layers(module)
    if not layers:
        return
    seed = int(torch.randint(0, 2**62, (), generator=generator))
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    for layer in layers:
        layer.generator = g
        if layer.warmup:
            layer.schedule = min(max(schedule, 0.0), 1.0)
