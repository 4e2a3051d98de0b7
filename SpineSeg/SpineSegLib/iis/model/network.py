"""The IIS network: a constant-width 3-D U-Net with three heads (Lessmann et al. 2019, Fig. 1).

Input: ``[N, 1 + memory_channels, Z, Y, X]`` -- the normalised image and the instance memory
(plus the disc memory for the SPIDER variant). Outputs (:class:`IISOutput`):

* ``segmentation`` -- logits ``[N, out_channels, Z, Y, X]``; sigmoid gives the probability that a
  voxel belongs to the *next* vertebra (SPIDER: channels 1 and 2 are disc and spinal canal);
* ``label`` -- ``[N]``, ReLU output: the regressed anatomical label (1 = C1 ... 24 = L5, 0 = none);
* ``completeness`` -- logits ``[N]``; sigmoid gives the probability the vertebra is complete.

Normalisation is InstanceNorm with affine parameters: at batch size 1 it is what BatchNorm with
batch statistics computes (the public baseline), it behaves the same in training and inference,
and batches larger than 1 do not mix samples. The two recognition heads continue the compression
path from the bottleneck and end in average pooling (global, or onto a coarse ``head_grid``^3 grid), so they work for any patch shape.

Console use::

    import torch
    from SpineSegLib.iis.model.config import IISConfig
    from SpineSegLib.iis.model.network import IISNet
    net = IISNet(IISConfig(width=32, patch_size=(96, 96, 96)))
    out = net(torch.zeros(1, 2, 96, 96, 96))
    out.segmentation.shape, out.label.shape     # (1, 1, 96, 96, 96), (1,)
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from SpineSegLib.iis.model.config import IISConfig


class IISOutput(NamedTuple):
    segmentation: torch.Tensor
    label: torch.Tensor
    completeness: torch.Tensor


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, padding=1, bias=False),
        nn.InstanceNorm3d(cout, affine=True),
        nn.ReLU(inplace=True),
        nn.Conv3d(cout, cout, 3, padding=1, bias=False),
        nn.InstanceNorm3d(cout, affine=True),
        nn.ReLU(inplace=True),
    )


class _RecognitionHead(nn.Module):
    """Further compression of the bottleneck to one value (label or completeness)."""

    def __init__(self, cin: int, width: int, final_norm: bool = False, grid: int = 1):
        super().__init__()
        # Without a norm on the last conv, the global average keeps what the features say about
        # the patch; after an InstanceNorm it would average a normalised distribution only.
        last = [nn.Conv3d(width, width, 3, padding=1, bias=False), nn.InstanceNorm3d(width, affine=True)] \
            if final_norm else [nn.Conv3d(width, width, 3, padding=1, bias=True)]
        self.features = nn.Sequential(
            nn.Conv3d(cin, width, 3, padding=1, bias=False),
            nn.InstanceNorm3d(width, affine=True),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(2, ceil_mode=True),
            *last,
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool3d(grid),
        )
        self.dense = nn.Linear(width * grid ** 3, 1)

    def forward(self, x):
        return self.dense(torch.flatten(self.features(x), 1)).squeeze(1)


class IISNet(nn.Module):
    def __init__(self, config: IISConfig):
        super().__init__()
        self.config = config
        w = config.width
        self.encoders = nn.ModuleList([_conv_block(config.in_channels if i == 0 else w, w) for i in range(config.levels)])
        self.pool = nn.MaxPool3d(2)
        self.upsamplers = nn.ModuleList([nn.ConvTranspose3d(w, w, 2, stride=2) for _ in range(config.levels - 1)])
        self.decoders = nn.ModuleList([_conv_block(2 * w, w) for _ in range(config.levels - 1)])
        self.segmentation_head = nn.Conv3d(w, config.out_channels, 1)
        self.label_head = _RecognitionHead(w, config.head_width, config.head_final_norm, config.head_grid)
        self.completeness_head = _RecognitionHead(w, config.head_width, config.head_final_norm, config.head_grid)

    def forward(self, x: torch.Tensor) -> IISOutput:
        skips = []
        for i, encoder in enumerate(self.encoders):
            x = encoder(x)
            if i < len(self.encoders) - 1:
                skips.append(x)
                x = self.pool(x)
        bottleneck = x
        for up, decoder, skip in zip(self.upsamplers, self.decoders, reversed(skips)):
            x = decoder(torch.cat([up(x), skip], dim=1))
        return IISOutput(
            self.segmentation_head(x),
            torch.relu(self.label_head(bottleneck)),
            self.completeness_head(bottleneck),
        )

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
