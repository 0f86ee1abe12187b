"""The Kinetics-400 I3D (Inception-v1 inflated to 3D, Carreira & Zisserman 2017) that FVD's features come from.

The architecture of the TF-Hub module TF-FVD uses, layer for layer: 3D convolutions with TF's "SAME"
padding, batch norm (eps 1e-3), Inception mixed blocks of four branches. FVD's features are the 400
pre-softmax logits, averaged over time, of 16-frame clips at 224x224 in [-1, 1].

The published detector is StyleGAN-V's TorchScript file ``i3d_torchscript.pt``; it is called as
``detector(videos, rescale=False, resize=False, return_features=True)`` on ``(B, 3, T, 224, 224)``
videos already resized and scaled. :func:`export_torchscript` writes this network with the same call, so
a test runs the FVD path on a random-weight I3D and a user's real file drops in at the same place.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import List

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["InceptionI3d", "export_torchscript", "load_i3d", "I3D_SIZE", "I3D_FRAMES"]

I3D_SIZE = 224   # the resolution the Kinetics I3D was trained at and FVD resizes to
I3D_FRAMES = 16  # the clip length of the FVD protocol (StyleGAN-V's fvd2048_16f)


def _same_padding(size: int, kernel: int, stride: int) -> List[int]:
    """TF's "SAME" padding of one dimension: (before, after), the extra pixel after."""
    total = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
    return [total // 2, total - total // 2]


class Unit3D(nn.Module):
    """Conv3d (TF SAME padding) + optional batch norm + optional ReLU."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), norm: bool = True,
                 relu: bool = True, bias: bool = False):
        super().__init__()
        self.kernel, self.stride = list(kernel), list(stride)
        self.conv3d = nn.Conv3d(cin, cout, kernel, stride=stride, bias=bias)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.01) if norm else nn.Identity()
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, h, w = x.shape[2], x.shape[3], x.shape[4]
        pt = _same_padding(t, self.kernel[0], self.stride[0])
        ph = _same_padding(h, self.kernel[1], self.stride[1])
        pw = _same_padding(w, self.kernel[2], self.stride[2])
        x = self.bn(self.conv3d(F.pad(x, [pw[0], pw[1], ph[0], ph[1], pt[0], pt[1]])))
        return F.relu(x) if self.relu else x


class MaxPool3dSame(nn.Module):
    """Max pooling with TF SAME padding (zeros are safe: the inputs follow a ReLU)."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = list(kernel), list(stride)
        self.pool = nn.MaxPool3d(kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pt = _same_padding(x.shape[2], self.kernel[0], self.stride[0])
        ph = _same_padding(x.shape[3], self.kernel[1], self.stride[1])
        pw = _same_padding(x.shape[4], self.kernel[2], self.stride[2])
        return self.pool(F.pad(x, [pw[0], pw[1], ph[0], ph[1], pt[0], pt[1]]))


class Mixed(nn.Module):
    """An inflated Inception block: 1x1 | 1x1->3x3 | 1x1->3x3 | maxpool->1x1, concatenated on channels."""

    def __init__(self, cin: int, c: List[int]):
        super().__init__()
        self.b0 = Unit3D(cin, c[0])
        self.b1a, self.b1b = Unit3D(cin, c[1]), Unit3D(c[1], c[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(cin, c[3]), Unit3D(c[3], c[4], (3, 3, 3))
        self.b3a, self.b3b = MaxPool3dSame((3, 3, 3), (1, 1, 1)), Unit3D(cin, c[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


class InceptionI3d(nn.Module):
    """I3D on ``(B, 3, T, H, W)`` in [-1, 1]: 400 Kinetics logits (``return_features``) or their softmax.

    ``rescale=True`` takes [0, 255] input instead; ``resize=True`` resizes frames to 224x224 first.
    Other sizes than 224 are pooled to one feature by an average over the whole final map (at 224 this is
    the TF network's 7x7 pool exactly); tests use them to run fast.
    """

    def __init__(self, num_classes: int = 400):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = Mixed(192, [64, 96, 128, 16, 32, 32])
        self.Mixed_3c = Mixed(256, [128, 128, 192, 32, 96, 64])
        self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        self.Mixed_4b = Mixed(480, [192, 96, 208, 16, 48, 64])
        self.Mixed_4c = Mixed(512, [160, 112, 224, 24, 64, 64])
        self.Mixed_4d = Mixed(512, [128, 128, 256, 24, 64, 64])
        self.Mixed_4e = Mixed(512, [112, 144, 288, 32, 64, 64])
        self.Mixed_4f = Mixed(528, [256, 160, 320, 32, 128, 128])
        self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
        self.Mixed_5b = Mixed(832, [256, 160, 320, 32, 128, 128])
        self.Mixed_5c = Mixed(832, [384, 192, 384, 48, 128, 128])
        self.logits = Unit3D(1024, num_classes, norm=False, relu=False, bias=True)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        if rescale:
            x = x / 127.5 - 1
        if resize:
            b, c, t = x.shape[0], x.shape[1], x.shape[2]
            frames = x.transpose(1, 2).reshape(b * t, c, x.shape[3], x.shape[4])
            frames = F.interpolate(frames, size=[224, 224], mode="bilinear", align_corners=False)  # I3D_SIZE
            x = frames.reshape(b, t, c, 224, 224).transpose(1, 2)
        x = self.MaxPool3d_2a_3x3(self.Conv3d_1a_7x7(x))                   # (B, 64, T/2, H/4, W/4)
        x = self.MaxPool3d_3a_3x3(self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x)))
        x = self.MaxPool3d_4a_3x3(self.Mixed_3c(self.Mixed_3b(x)))        # (B, 480, T/4, H/16, W/16)
        x = self.Mixed_4f(self.Mixed_4e(self.Mixed_4d(self.Mixed_4c(self.Mixed_4b(x)))))
        x = self.Mixed_5c(self.Mixed_5b(self.MaxPool3d_5a_2x2(x)))        # (B, 1024, T/8, H/32, W/32)
        x = F.adaptive_avg_pool3d(x, [x.shape[2], 1, 1])                   # TF: 7x7 average at 224
        x = F.avg_pool3d(x, [min(2, x.shape[2]), 1, 1], stride=1)          # TF: 2 frames, stride 1
        logits = self.logits(x).mean(dim=(2, 3, 4))                        # (B, 400), averaged over time
        return logits if return_features else logits.softmax(-1)


def export_torchscript(model: InceptionI3d, path: str | Path) -> Path:
    """Writes ``model`` as TorchScript, callable like StyleGAN-V's ``i3d_torchscript.pt``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.x, but it is the format of the real file
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(model.eval()).save(str(path))
    return path


def load_i3d(path: str | Path, device: torch.device | str = "cpu") -> torch.jit.ScriptModule:
    """A TorchScript I3D detector (StyleGAN-V's file, or :func:`export_torchscript`'s) in eval mode."""
    try:
        with warnings.catch_warnings():  # the real detector exists only as TorchScript
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location=device).eval()
    except RuntimeError as err:
        raise ValueError(f"{path} is not a TorchScript I3D file ({str(err).splitlines()[0]})") from None
