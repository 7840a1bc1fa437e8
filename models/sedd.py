"""SEDD's DiT (Lou et al. 2024) with the published parameter names and shapes, so that published
checkpoints load strictly, and its wrapper behind the model protocol.

Output: log concrete scores [B, L, V]. With scale_by_sigma (absorbing) the network's output is
shifted by −log(e^σ̄ − 1) − log(V − 1), and the entry at the input token is set to 0.
Attention: torch's scaled_dot_product_attention (flash-attn is never needed; torch picks its own
fused kernels on CUDA).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.kernels import Absorbing
from models.protocol import ModelOutput


@dataclass
class SEDDConfig:
    vocab_size: int  # all states, MASK included for absorbing graphs
    hidden_size: int = 768
    cond_dim: int = 128
    n_blocks: int = 12
    n_heads: int = 12
    dropout: float = 0.1
    scale_by_sigma: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


class LayerNorm(nn.Module):
    """Weight only, no bias, computed in float32 (SEDD)."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.dim = dim

    def forward(self, x):
        with torch.autocast(x.device.type, enabled=False):
            x = F.layer_norm(x.float(), [self.dim])
        return x * self.weight[None, None, :]


class EmbeddingLayer(nn.Module):
    def __init__(self, dim: int, vocab_size: int):
        super().__init__()
        self.embedding = nn.Parameter(torch.empty(vocab_size, dim))
        nn.init.kaiming_uniform_(self.embedding, a=math.sqrt(5))

    def forward(self, x):
        return self.embedding[x]


class TimestepEmbedder(nn.Module):
    """256-dim sinusoid of σ̄ ([cos, sin], frequencies exp(−ln(10⁴)·i/128)) through a 2-layer MLP."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(frequency_embedding_size, hidden_size, bias=True), nn.SiLU(),
                                 nn.Linear(hidden_size, hidden_size, bias=True))
        self.frequency_embedding_size = frequency_embedding_size

    def forward(self, sigma):
        half = self.frequency_embedding_size // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=sigma.device) / half)
        args = sigma[:, None].float() * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class Rotary(nn.Module):
    def __init__(self, dim: int, base: int = 10_000):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)))

    def forward(self, seq_len: int, device):
        t = torch.arange(seq_len, device=device, dtype=self.inv_freq.dtype)
        freqs = torch.outer(t, self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)  # [L, head_dim]
        return emb.cos()[None, :, None, :], emb.sin()[None, :, None, :]


def _rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def _modulate(x, shift, scale):
    return x * (1 + scale) + shift


class DDiTBlock(nn.Module):
    def __init__(self, dim: int, n_heads: int, cond_dim: int, mlp_ratio: int = 4, dropout: float = 0.1):
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = LayerNorm(dim)
        self.attn_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.attn_out = nn.Linear(dim, dim, bias=False)
        self.norm2 = LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim, bias=True), nn.GELU(approximate="tanh"),
                                 nn.Linear(mlp_ratio * dim, dim, bias=True))
        self.dropout = nn.Dropout(dropout)
        self.adaLN_modulation = nn.Linear(cond_dim, 6 * dim, bias=True)
        nn.init.zeros_(self.adaLN_modulation.weight)
        nn.init.zeros_(self.adaLN_modulation.bias)

    def forward(self, x, rotary, c):
        B, L, D = x.shape
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c)[:, None].chunk(6, dim=2)
        h = _modulate(self.norm1(x), shift_msa, scale_msa)
        q, k, v = self.attn_qkv(h).view(B, L, 3, self.n_heads, D // self.n_heads).unbind(2)  # [B, L, H, hd]
        cos, sin = rotary
        q, k = (q * cos + _rotate_half(q) * sin).to(v.dtype), (k * cos + _rotate_half(k) * sin).to(v.dtype)
        att = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))  # [B, H, L, hd]
        x = x + gate_msa * self.dropout(self.attn_out(att.transpose(1, 2).reshape(B, L, D)))
        return x + gate_mlp * self.dropout(self.mlp(_modulate(self.norm2(x), shift_mlp, scale_mlp)))


class DDitFinalLayer(nn.Module):
    def __init__(self, dim: int, out_channels: int, cond_dim: int):
        super().__init__()
        self.norm_final = LayerNorm(dim)
        self.linear = nn.Linear(dim, out_channels)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.adaLN_modulation = nn.Linear(cond_dim, 2 * dim, bias=True)
        nn.init.zeros_(self.adaLN_modulation.weight)
        nn.init.zeros_(self.adaLN_modulation.bias)

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c)[:, None].chunk(2, dim=2)
        return self.linear(_modulate(self.norm_final(x), shift, scale))


class SEDD(nn.Module):
    """The network: (tokens [B, L], σ̄ [B]) -> log scores [B, L, V]."""

    def __init__(self, config: SEDDConfig):
        super().__init__()
        self.config = config
        d = config.hidden_size
        if d % config.n_heads:
            raise ValueError(f"hidden_size {d} is not divisible by n_heads {config.n_heads}")
        self.vocab_embed = EmbeddingLayer(d, config.vocab_size)
        self.sigma_map = TimestepEmbedder(config.cond_dim)
        self.rotary_emb = Rotary(d // config.n_heads)
        self.blocks = nn.ModuleList([DDiTBlock(d, config.n_heads, config.cond_dim, dropout=config.dropout)
                                     for _ in range(config.n_blocks)])
        self.output_layer = DDitFinalLayer(d, config.vocab_size, config.cond_dim)

    def forward(self, indices, sigma, bf16: bool = False):
        """bf16: run the blocks and the output layer under bfloat16 autocast, as published SEDD does on CUDA."""
        x = self.vocab_embed(indices)
        c = F.silu(self.sigma_map(sigma))
        rotary = self.rotary_emb(indices.shape[1], indices.device)
        with torch.autocast(indices.device.type, dtype=torch.bfloat16, enabled=bf16):
            for block in self.blocks:
                x = block(x, rotary, c)
            x = self.output_layer(x, c)
        x = x.float()
        if self.config.scale_by_sigma:
            sigma = sigma.float()
            esigm1_log = torch.where(sigma < 0.5, torch.expm1(sigma), sigma.exp() - 1).log()[:, None, None]
            x = x - esigm1_log - math.log(x.shape[-1] - 1)
        return torch.scatter(x, -1, indices[..., None], torch.zeros_like(x[..., :1]))


PRECISIONS = ("fp32", "bf16")


def check_scale_by_sigma(config: SEDDConfig, kernel, source: str = "SEDD network") -> None:
    """scale_by_sigma is the absorbing graph's output shift −log(e^σ̄ − 1) − log(V − 1). Published SEDD
    refuses it for any other graph (`assert self.absorb`); so do we, rather than apply it silently."""
    if config.scale_by_sigma and not isinstance(kernel, Absorbing):
        graph = type(kernel).__name__.lower()
        raise ValueError(f"{source}: scale_by_sigma=true with the {graph!r} graph: the flag is the absorbing graph's "
                         f"output shift, and published SEDD refuses it for other graphs; set scale_by_sigma: false "
                         f"(model.scale_by_sigma, or train.arch.scale_by_sigma for training)")


class SEDDModel:
    """A SEDD network behind the model protocol: called with times, it feeds σ̄(t) to the network.

    precision: fp32, or bf16 (autocast blocks, as published SEDD on CUDA; 1.5-1.8x faster on a
    bf16-capable CPU). chunk: sequences per network call on CPU, where chunks of ~32 sequences of 256
    tokens keep activations in cache and run ~2x faster than one batch of 256
    (benchmarks/sedd_forward.py); on a GPU the whole batch goes at once. Neither changes the model
    beyond float rounding.
    """
    output = "score"  # models.protocol.output_of

    def __init__(self, net: SEDD, process, identity: dict | None = None, precision: str = "fp32",
                 chunk: int | None = None):
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
        if chunk is not None and int(chunk) < 1:
            raise ValueError(f"chunk must be a positive number of sequences or null, got {chunk}")
        check_scale_by_sigma(net.config, process.kernel)
        self.net = net.eval()
        self.process = process
        self.precision = precision
        self.chunk = int(chunk) if chunk is not None else None
        self._identity = identity or {}
        self.name = "sedd"
        if net.config.vocab_size != process.num_states:
            raise ValueError(f"network vocabulary {net.config.vocab_size} does not match the process's "
                             f"{process.num_states} states")

    def identity(self) -> dict:
        return {"name": self.name, "precision": self.precision, **self._identity}

    @torch.no_grad()  # not inference_mode: callers may modify the output in place
    def __call__(self, x, t):
        device = next(self.net.parameters()).device
        sigma = self.process.sigma(t).to(device=device, dtype=torch.float32)
        x = x.to(device)
        step = (self.chunk if device.type == "cpu" else None) or x.shape[0]
        bf16 = self.precision == "bf16"
        out = torch.cat([self.net(x[i:i + step], sigma[i:i + step], bf16=bf16).cpu()
                         for i in range(0, x.shape[0], step)])
        return ModelOutput("score", out)
