"""tauLDR's image model (Campbell et al. 2022): the DDPM-style UNet with the published parameter names
and shapes (andrew-cr/tauLDR lib/networks/networks.py `UNet`), so that published checkpoints load
strictly, its x0-prediction head (lib/models/models.py `ImageX0PredBase`), and the wrapper behind
the model protocol.

The UNet reads pixels centred to [−1, 1] and times t ∈ [0, 1] scaled by time_scale_factor, and
outputs per pixel a mean μ = tanh(x_centred + h) (a residual on the input pixel) and a log scale.
The head turns them into a discretized logistic over S bins of width 2/S on [−1, 1]:
logit_k = log(σ((c_k + w/2 − μ)/s) − σ((c_k − w/2 − μ)/s)), s = exp(log_scale − 2), computed as
tauLDR does (log-minus-exp with eps 1e-6; the outer bins are not extended to ±∞). fix_logistic takes
the minimum with the same difference computed from the upper tail, which is accurate where both
CDFs are near 1. Every operation follows the published code in its order (outputs checked once to be
bit-identical on CPU to the published UNet and ImageX0PredBase.forward holding the same weights).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.protocol import ModelOutput


@dataclass
class UNetConfig:
    """Defaults: the published CIFAR-10 model (tauLDR config/train/cifar10.py), 35,749,766 parameters."""

    S: int = 256  # states per pixel
    shape: tuple[int, int, int] = (3, 32, 32)  # (C, H, W); sequences are images flattened in CHW order
    ch: int = 128
    num_res_blocks: int = 2
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)  # one entry per scale (tauLDR's num_scales = len(ch_mult))
    scale_count_to_put_attn: int = 1  # the scale whose res blocks are followed by attention (1: 16×16 of 32×32)
    data_min_max: tuple[float, float] = (0, 255)  # pixel values mapped to −1 and 1
    dropout: float = 0.1
    skip_rescale: bool = True  # residual sums divided by √2
    time_embed_dim: int = 128
    time_scale_factor: float = 1000.0  # t ∈ [0, 1] is embedded as t·factor (DDPM's 0..1000 steps)
    fix_logistic: bool = False  # the published CIFAR-10 model was trained without it

    def __post_init__(self):
        self.shape = tuple(int(v) for v in self.shape)
        self.ch_mult = tuple(int(v) for v in self.ch_mult)
        self.data_min_max = tuple(self.data_min_max)
        if len(self.shape) != 3:
            raise ValueError(f"tauLDR UNet: shape must be (C, H, W), got {list(self.shape)}")
        if self.S < 2:
            raise ValueError(f"tauLDR UNet: S must be at least 2 states, got {self.S}")
        if not self.ch_mult:
            raise ValueError("tauLDR UNet: ch_mult must name at least one scale")
        factor = 2 ** (len(self.ch_mult) - 1)
        if self.shape[1] % factor or self.shape[2] % factor:
            raise ValueError(f"tauLDR UNet: image size {self.shape[1]}×{self.shape[2]} is not divisible by "
                             f"{factor}, which {len(self.ch_mult)} scales (ch_mult {list(self.ch_mult)}) halve it to")
        lo, hi = self.data_min_max
        if hi - lo != self.S - 1:
            # The head puts bin k at the centred pixel value lo + k; another span misplaces every bin.
            raise ValueError(f"tauLDR UNet: data_min_max {list(self.data_min_max)} spans {hi - lo + 1} pixel values "
                             f"but S = {self.S} states; expected data_min_max [0, {self.S - 1}]")

    @property
    def input_channels(self) -> int:
        return self.shape[0]

    @property
    def num_scales(self) -> int:
        return len(self.ch_mult)

    @property
    def length(self) -> int:
        """L = C·H·W: tokens per sequence."""
        return math.prod(self.shape)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}  # YAML-safe


def timestep_embedding(t: torch.Tensor, dim: int, max_positions: int = 10_000) -> torch.Tensor:
    """DDPM's sinusoid [sin, cos] with frequencies exp(−ln(10⁴)·i/(dim/2 − 1)). [B, dim]"""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=t.device) * -(math.log(max_positions) / (half - 1)))
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


def _groupnorm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=min(channels // 4, 32), num_channels=channels, eps=1e-6)


class NiN(nn.Module):
    """A 1×1 convolution stored as W [in, out] and b [out] (score_sde's NIN), DDPM's fan-avg uniform init."""

    def __init__(self, in_ch: int, out_ch: int, init_scale: float = 0.1):
        super().__init__()
        bound = math.sqrt(3 * (init_scale or 1e-10) / ((in_ch + out_ch) / 2))
        self.W = nn.Parameter(torch.empty(in_ch, out_ch).uniform_(-bound, bound))
        self.b = nn.Parameter(torch.zeros(out_ch))

    def forward(self, x):  # [B, in, H, W] -> [B, out, H, W]
        return torch.einsum("bihw,ik->bkhw", x, self.W) + self.b[:, None, None]


class AttnBlock(nn.Module):
    """Single-head self-attention over the H·W positions, channels as features."""

    def __init__(self, channels: int, skip_rescale: bool = True):
        super().__init__()
        self.skip_rescale = skip_rescale
        self.GroupNorm_0 = _groupnorm(channels)
        self.NIN_0 = NiN(channels, channels)
        self.NIN_1 = NiN(channels, channels)
        self.NIN_2 = NiN(channels, channels)
        self.NIN_3 = NiN(channels, channels, init_scale=0.0)

    def forward(self, x):
        B, C, H, W = x.shape
        h = self.GroupNorm_0(x)
        q, k, v = self.NIN_0(h), self.NIN_1(h), self.NIN_2(h)  # [B, C, H, W]
        w = torch.einsum("bchw,bcij->bhwij", q, k) * C**-0.5
        w = torch.softmax(w.reshape(B, H, W, H * W), dim=-1).reshape(B, H, W, H, W)
        h = self.NIN_3(torch.einsum("bhwij,bcij->bchw", w, v))
        return (x + h) / math.sqrt(2.0) if self.skip_rescale else x + h


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, temb_dim: int, dropout: float = 0.1, skip_rescale: bool = True):
        super().__init__()
        self.skip_rescale = skip_rescale
        self.groupnorm0 = _groupnorm(in_ch)
        self.conv0 = nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1)
        self.dense0 = nn.Linear(temb_dim, out_ch)
        nn.init.zeros_(self.dense0.bias)
        self.groupnorm1 = _groupnorm(out_ch)
        self.dropout0 = nn.Dropout(dropout)
        self.conv1 = nn.Conv2d(out_ch, out_ch, kernel_size=3, padding=1)
        if out_ch != in_ch:
            self.nin = NiN(in_ch, out_ch)

    def forward(self, x, temb):
        h = self.conv0(F.silu(self.groupnorm0(x)))
        h = h + self.dense0(F.silu(temb))[:, :, None, None]
        h = self.conv1(self.dropout0(F.silu(self.groupnorm1(h))))
        if hasattr(self, "nin"):
            x = self.nin(x)
        return (x + h) / math.sqrt(2.0) if self.skip_rescale else x + h


class Downsample(nn.Module):
    """Stride-2 3×3 convolution after padding one pixel right and bottom (as TF's 'SAME')."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, size=(2 * x.shape[2], 2 * x.shape[3]), mode="nearest"))


class TauLDRImageNet(nn.Module):
    """tauLDR's UNet with its x0-prediction head: (x [B, L] pixels in CHW order, t [B]) -> logits [B, L, S].

    Modules are registered in the published order, so parameters() runs in the order of tauLDR's EMA
    shadow list, and state-dict keys are the published ones without the `net.` prefix."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        c, temb_dim = config.ch, 4 * config.time_embed_dim
        block = dict(temb_dim=temb_dim, dropout=config.dropout, skip_rescale=config.skip_rescale)
        self.temb_modules = nn.ModuleList([nn.Linear(config.time_embed_dim, temb_dim), nn.Linear(temb_dim, temb_dim)])
        for m in self.temb_modules:
            nn.init.zeros_(m.bias)
        self.input_conv = nn.Conv2d(config.input_channels, c, kernel_size=3, padding=1)

        skips, in_ch, down = [c], c, []  # skips: channels of each activation the down path saves
        for scale, mult in enumerate(config.ch_mult):
            for _ in range(config.num_res_blocks):
                down.append(ResBlock(in_ch, c * mult, **block))
                in_ch = c * mult
                if scale == config.scale_count_to_put_attn:
                    down.append(AttnBlock(in_ch, config.skip_rescale))
                skips.append(in_ch)
            if scale != config.num_scales - 1:
                down.append(Downsample(in_ch))
                skips.append(in_ch)
        self.downsampling_modules = nn.ModuleList(down)

        self.middle_modules = nn.ModuleList([ResBlock(in_ch, in_ch, **block), AttnBlock(in_ch, config.skip_rescale),
                                             ResBlock(in_ch, in_ch, **block)])

        up = []
        for scale in reversed(range(config.num_scales)):
            for _ in range(config.num_res_blocks + 1):
                up.append(ResBlock(in_ch + skips.pop(), c * config.ch_mult[scale], **block))
                in_ch = c * config.ch_mult[scale]
                if scale == config.scale_count_to_put_attn:
                    up.append(AttnBlock(in_ch, config.skip_rescale))
            if scale != 0:
                up.append(Upsample(in_ch))
        self.upsampling_modules = nn.ModuleList(up)

        self.output_modules = nn.ModuleList([_groupnorm(in_ch),
                                             nn.Conv2d(in_ch, 2 * config.input_channels, kernel_size=3, padding=1)])

    def unet(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The UNet alone: pixel values [B, C, H, W] and times [B] -> [B, 2C, H, W] float32, the
        logistic's μ = tanh(x_centred + h) (channels :C) and log scale (channels C:)."""
        cfg = self.config
        lo, hi = cfg.data_min_max
        centred = 2 * ((x.float() - lo) / (hi - lo)) - 1  # [B, C, H, W] in [−1, 1]
        # Times in float32 before scaling, as tauLDR's samplers and loss pass them.
        temb = timestep_embedding(t.float() * cfg.time_scale_factor, cfg.time_embed_dim)
        temb = self.temb_modules[1](F.silu(self.temb_modules[0](temb)))  # [B, 4·time_embed_dim]

        h = self.input_conv(centred)
        hs = [h]
        down = iter(self.downsampling_modules)
        for scale in range(cfg.num_scales):
            for _ in range(cfg.num_res_blocks):
                h = next(down)(h, temb)
                if scale == cfg.scale_count_to_put_attn:
                    h = next(down)(h)
                hs.append(h)
            if scale != cfg.num_scales - 1:
                h = next(down)(h)
                hs.append(h)

        res0, attn, res1 = self.middle_modules
        h = res1(attn(res0(h, temb)), temb)

        up = iter(self.upsampling_modules)
        for scale in reversed(range(cfg.num_scales)):
            for _ in range(cfg.num_res_blocks + 1):
                h = next(up)(torch.cat([h, hs.pop()], dim=1), temb)
                if scale == cfg.scale_count_to_put_attn:
                    h = next(up)(h)
            if scale != 0:
                h = next(up)(h)

        h = self.output_modules[1](F.silu(self.output_modules[0](h)))  # [B, 2C, H, W]
        C = cfg.input_channels
        return torch.cat([torch.tanh(centred + h[:, :C]), h[:, C:]], dim=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x [B, L] long (L = C·H·W, CHW order), t [B] -> unnormalized log p(x0 | x_t) [B, L, S] float32."""
        cfg = self.config
        B, L = x.shape
        if L != cfg.length:
            raise ValueError(f"tauLDR image net: sequences of length {L}, expected C·H·W = {cfg.length} "
                             f"for images of shape {list(cfg.shape)}")
        out = self.unet(x.view(B, *cfg.shape), t)
        C, S = cfg.input_channels, cfg.S
        mu, log_scale = out[:, :C, ..., None], out[:, C:, ..., None]  # [B, C, H, W, 1]
        inv_scale = torch.exp(-(log_scale - 2))
        width = 2.0 / S
        centers = torch.linspace(-1.0 + width / 2, 1.0 - width / 2, S, device=x.device)  # [S]
        left = (centers - width / 2 - mu) * inv_scale  # [B, C, H, W, S]
        right = (centers + width / 2 - mu) * inv_scale
        left_logcdf, right_logcdf = F.logsigmoid(left), F.logsigmoid(right)
        logits = _log_minus_exp(right_logcdf, left_logcdf)
        if cfg.fix_logistic:  # the same bin mass from the upper tails: log(1 − σ(a)) = log σ(a) − a
            logits = torch.min(logits, _log_minus_exp(left_logcdf - left, right_logcdf - right))
        return logits.view(B, L, S)


def _log_minus_exp(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """log(e^a − e^b) for b < a, with tauLDR's eps inside the log1p (arXiv 2107.03006)."""
    return a + torch.log1p(-torch.exp(b - a) + eps)


class TauLDRModel:
    """A tauLDR network (the image UNet here, or the sequence transformer of models/tauldr_sequence.py)
    behind the model protocol: called with times (the networks embed t itself, not σ̄(t)), it returns
    the denoiser softmax(logits) [B, L, S] float32.

    chunk: sequences per network call on CPU (bounds the [chunk, L, S] logistic tensors); on a GPU
    the whole batch goes at once. It does not change the model beyond float rounding."""
    output = "denoiser"  # models.protocol.output_of

    def __init__(self, net: nn.Module, process, identity: dict | None = None, chunk: int | None = None):
        if chunk is not None and int(chunk) < 1:
            raise ValueError(f"chunk must be a positive number of sequences or null, got {chunk}")
        if net.config.S != process.num_states:
            raise ValueError(f"tauLDR network has S = {net.config.S} states per token, but its process has "
                             f"{process.num_states}")
        self.net = net.eval()
        self.process = process
        self.chunk = int(chunk) if chunk is not None else None
        self._identity = identity or {}
        self.name = "tauldr"

    def identity(self) -> dict:
        return {"name": self.name, **self._identity}

    @torch.no_grad()  # not inference_mode: callers may modify the output in place
    def __call__(self, x, t):
        S = self.net.config.S
        if x.dtype.is_floating_point or x.dtype == torch.bool or x.ndim != 2:
            raise ValueError(f"tauLDR model: x must be integer states [B, L], got {x.dtype} of shape {tuple(x.shape)}")
        if x.numel() and (x.min() < 0 or x.max() >= S):
            raise ValueError(f"tauLDR model: states must lie in [0, {S}), got [{int(x.min())}, {int(x.max())}]")
        device = next(self.net.parameters()).device
        x, t = x.to(device), t.to(device=device, dtype=torch.float32)
        step = (self.chunk if device.type == "cpu" else None) or x.shape[0]
        out = torch.cat([torch.softmax(self.net(x[i:i + step], t[i:i + step]), dim=-1).cpu()
                         for i in range(0, x.shape[0], step)])
        return ModelOutput("denoiser", out)
