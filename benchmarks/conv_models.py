"""The conv networks of the conv benchmarks: VGG-style nets built in PyTorch with BatchNorm
(random running statistics, eval mode) and read by neurosim, which folds the BatchNorm.

``vgg(size, channels, widths, blocks)``: ``blocks`` times [conv3x3(w) BN ReLU, conv3x3(w) BN
ReLU, maxpool 2] for w in ``widths``, then flatten, fc64 ReLU, fc10. Random weights (He
initialisation), fixed by ``seed``.
"""

from __future__ import annotations

import numpy as np

import neurosim as ns


def torch_vgg(size: int = 16, channels: int = 1, widths=(16, 32), seed: int = 0,
              convs_per_block: int = 2):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    layers, c, hw = [], channels, size
    for w in widths:
        for _ in range(convs_per_block):
            conv = nn.Conv2d(c, w, 3, padding=1)
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            bn = nn.BatchNorm2d(w)
            with torch.no_grad():  # running statistics as after training
                bn.running_mean.uniform_(-0.2, 0.2)
                bn.running_var.uniform_(0.5, 1.5)
                bn.weight.uniform_(0.8, 1.2)
                bn.bias.uniform_(-0.1, 0.1)
            layers += [conv, bn, nn.ReLU()]
            c = w
        layers.append(nn.MaxPool2d(2))
        hw //= 2
    layers += [nn.Flatten(), nn.Linear(c * hw * hw, 64), nn.ReLU(), nn.Linear(64, 10)]
    return nn.Sequential(*layers).eval()


def vgg(size: int = 16, channels: int = 1, widths=(16, 32), seed: int = 0,
        convs_per_block: int = 2, name: "str | None" = None) -> ns.Network:
    """The neurosim network of :func:`torch_vgg` (BatchNorm folded by the reader)."""
    from neurosim.io.torch import network_from_torch

    net = network_from_torch(torch_vgg(size, channels, widths, seed, convs_per_block),
                             input_shape=(channels, size, size))
    label = name or f"vgg {channels}x{size}x{size} {'-'.join(map(str, widths))}"
    net.metadata["name"] = label
    return net


def images(network: ns.Network, n: int = 128, seed: int = 1) -> np.ndarray:
    """Random images in [0, 1) of the network's input shape."""
    return np.random.default_rng(seed).random((n,) + tuple(network.input_shape)).astype(
        np.float32)
