"""Trident-enhanced DRIT: disentangled simulation → experiment translation for 1-channel images.

DRIT++ (Lee et al. 2018, 2020) with the pieces the paper's method needs:
- content encoders E_c^A, E_c^B whose deepest residual block is shared (a common content space);
- attribute (style) encoders E_a^A, E_a^B giving a Gaussian posterior (μ, log σ²) of dimension nz;
- generators G_A, G_B fed content maps and the attribute code (tiled, concatenated at every block);
- multi-scale PatchGAN domain discriminators D_A, D_B and a content discriminator D_c.
Domain A = clean simulations, domain B = experimental images. Images are [N, 1, H, W] in [−1, 1].

The losses live in :mod:`vdwstack.drit.losses`; this module holds only the networks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from vdwstack.core.settings import setting


@dataclass(frozen=True)
class DritArchitecture:
    """Network sizes (config ``drit.architecture``)."""

    nf: int = setting(32, "base channel count (paper: 64)", minimum=4)
    nz: int = setting(8, "attribute (style) code dimension", minimum=1)
    n_res: int = setting(3, "residual blocks of the content encoder and generators", minimum=0)
    disc_scales: int = setting(2, "scales of the multi-scale discriminators", minimum=1)
    disc_layers: int = setting(3, "convolution layers per discriminator scale", minimum=1)

    def to_dict(self) -> dict:
        return asdict(self)


class ReflectionPad(nn.ReflectionPad2d):
    """Reflection padding in the input's own precision and layout. CPU autocast lists
    reflection_pad2d among its fp32 ops, which cast every bf16 activation to fp32 and the conv casts
    it back: two full copies per padded layer for what only copies values (exact in any precision)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x)


class ReflectConv2d(nn.Conv2d):
    """nn.Conv2d(padding_mode="reflect") whose padding runs in the input's precision (see ReflectionPad)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, padding_mode="reflect", **kwargs)

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            x = F.pad(x, self._reversed_padding_repeated_twice, mode="reflect")
        return F.conv2d(x, weight, bias, self.stride, 0, self.dilation, self.groups)


class InstanceNorm(nn.InstanceNorm2d):
    """nn.InstanceNorm2d (no affine, no running stats) that keeps a channels-last tensor
    channels-last. torch's instance_norm makes a contiguous copy of a channels-last input and returns
    a contiguous output, which the next conv copies back: three full copies per layer, forward and
    backward, 7 of 18.6 s of a paper-scale bf16 iteration on the CPU. Here the statistics are one
    reduction over H, W (accumulated in fp32 by torch) and the rest is elementwise, in the input's
    own layout and precision. Same state dict as nn.InstanceNorm2d (none)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
            return super().forward(x)
        var, mean = torch.var_mean(x, dim=(2, 3), correction=0, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps)


class ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(
            ReflectionPad(1), nn.Conv2d(ch, ch, 3), InstanceNorm(ch), nn.ReLU(inplace=True),
            ReflectionPad(1), nn.Conv2d(ch, ch, 3), InstanceNorm(ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ContentEncoders(nn.Module):
    """E_c^A and E_c^B: domain-specific stems (stride 4) + one shared deep residual block."""

    def __init__(self, arch: DritArchitecture):
        super().__init__()
        nf = arch.nf

        def stem():
            layers = [ReflectionPad(3), nn.Conv2d(1, nf, 7), nn.LeakyReLU(0.2, inplace=True)]
            ch = nf
            for _ in range(2):
                layers += [ReflectionPad(1), nn.Conv2d(ch, ch * 2, 3, stride=2), InstanceNorm(ch * 2),
                           nn.ReLU(inplace=True)]
                ch *= 2
            layers += [ResBlock(ch) for _ in range(arch.n_res)]
            return nn.Sequential(*layers)

        self.stem_a, self.stem_b = stem(), stem()
        self.shared = ResBlock(nf * 4)
        self.channels = nf * 4

    def forward(self, x: torch.Tensor, domain: str) -> torch.Tensor:
        stem = self.stem_a if domain == "A" else self.stem_b
        return self.shared(stem(x))


class AttributeEncoder(nn.Module):
    """E_a: image → (μ, log σ²) of the attribute code (style), globally pooled."""

    def __init__(self, arch: DritArchitecture):
        super().__init__()
        nf = arch.nf
        layers = [ReflectionPad(3), nn.Conv2d(1, nf, 7), nn.LeakyReLU(0.2, inplace=True)]
        ch = nf
        for _ in range(4):
            nxt = min(ch * 2, nf * 4)
            layers += [ReflectionPad(1), nn.Conv2d(ch, nxt, 4, stride=2), nn.LeakyReLU(0.2, inplace=True)]
            ch = nxt
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1))
        self.mu = nn.Linear(ch, arch.nz)
        self.logvar = nn.Linear(ch, arch.nz)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x).flatten(1)
        return self.mu(h), self.logvar(h).clamp(-10, 10)


class ConcatResBlock(nn.Module):
    """Residual block whose convolutions see the attribute code tiled over the map (DRIT 'concat')."""

    def __init__(self, ch: int, nz: int):
        super().__init__()
        self.c1 = ReflectConv2d(ch + nz, ch, 3, padding=1)
        self.c2 = ReflectConv2d(ch + nz, ch, 3, padding=1)
        self.n1, self.n2 = InstanceNorm(ch), InstanceNorm(ch)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        zt = z[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
        h = F.relu(self.n1(self.c1(torch.cat([x, zt], 1))))
        h = self.n2(self.c2(torch.cat([h, zt], 1)))
        return x + h


class Generator(nn.Module):
    """G: (content map, attribute code) → image in [−1, 1]."""

    def __init__(self, arch: DritArchitecture):
        super().__init__()
        ch = arch.nf * 4
        self.blocks = nn.ModuleList([ConcatResBlock(ch, arch.nz) for _ in range(arch.n_res + 1)])
        up = []
        for _ in range(2):
            up += [nn.Upsample(scale_factor=2, mode="nearest"),
                   ReflectConv2d(ch, ch // 2, 3, padding=1),
                   InstanceNorm(ch // 2), nn.ReLU(inplace=True)]
            ch //= 2
        up += [ReflectConv2d(ch, 1, 7, padding=3), nn.Tanh()]
        self.up = nn.Sequential(*up)

    def forward(self, content: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = content
        for block in self.blocks:
            h = block(h, z)
        return self.up(h)


class MultiScaleDiscriminator(nn.Module):
    """PatchGAN discriminators on the image and its 2×, 4× … downsampled copies (LSGAN outputs)."""

    def __init__(self, arch: DritArchitecture):
        super().__init__()

        def one():
            nf = arch.nf
            layers = [nn.Conv2d(1, nf, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            ch = nf
            for _ in range(arch.disc_layers - 1):
                layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1), InstanceNorm(ch * 2), nn.LeakyReLU(0.2, inplace=True)]
                ch *= 2
            layers += [nn.Conv2d(ch, 1, 3, 1, 1)]
            return nn.Sequential(*layers)

        self.nets = nn.ModuleList([one() for _ in range(arch.disc_scales)])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, net in enumerate(self.nets):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outs.append(net(x))
        return outs


class ContentDiscriminator(nn.Module):
    """D_c: which domain did a content map come from? (logit for 'B')."""

    def __init__(self, arch: DritArchitecture):
        super().__init__()
        ch = arch.nf * 4
        self.net = nn.Sequential(
            nn.Conv2d(ch, ch, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ch, ch, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(ch, 1),
        )

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return self.net(c)


class Drit(nn.Module):
    """All DRIT networks in one module (generator side and discriminators)."""

    def __init__(self, arch: DritArchitecture = DritArchitecture()):
        super().__init__()
        self.arch = arch
        self.enc_c = ContentEncoders(arch)
        self.enc_a_A = AttributeEncoder(arch)
        self.enc_a_B = AttributeEncoder(arch)
        self.gen_A = Generator(arch)
        self.gen_B = Generator(arch)
        self.dis_A = MultiScaleDiscriminator(arch)
        self.dis_B = MultiScaleDiscriminator(arch)
        self.dis_c = ContentDiscriminator(arch)

    def generator_parameters(self):
        for m in (self.enc_c, self.enc_a_A, self.enc_a_B, self.gen_A, self.gen_B):
            yield from m.parameters()

    def discriminator_parameters(self):
        for m in (self.dis_A, self.dis_B):
            yield from m.parameters()

    @torch.no_grad()
    def translate(self, sim: torch.Tensor, style: torch.Tensor | None = None, z: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
        """Simulation(s) [N,1,H,W] → experiment-like images, with the attribute code encoded from
        ``style`` images (posterior mean), given as ``z``, or drawn from the prior N(0, I)."""
        c = self.enc_c(sim, "A")
        if z is None:
            if style is not None:
                z, _ = self.enc_a_B(style)
                if z.shape[0] != sim.shape[0]:
                    z = z[torch.randint(len(z), (sim.shape[0],), generator=generator, device=z.device)]
            else:
                z = torch.randn(sim.shape[0], self.arch.nz, generator=generator, device=sim.device)
        return self.gen_B(c, z)


class Translator(nn.Module):
    """The part of DRIT that `synthesize` needs: E_c^A (with the shared block), E_a^B and G_B."""

    def __init__(self, arch: DritArchitecture = DritArchitecture()):
        super().__init__()
        self.arch = arch
        self.enc_c = ContentEncoders(arch)
        self.enc_a_B = AttributeEncoder(arch)
        self.gen_B = Generator(arch)

    translate = Drit.translate
