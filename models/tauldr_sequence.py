"""tauLDR's sequence model (Campbell et al. 2022), the network of its piano experiment: a post-norm
transformer encoder with FiLM from a time embedding, with the published parameter names and shapes
(andrew-cr/tauLDR lib/networks/networks.py `TransformerEncoder`), so that published checkpoints load
strictly. (x [B, L] states, t [B]) -> logits of p(x0 | x_t) [B, L, S].

Layout: one-hot input -> Linear(S, d) (or a scalar input in [−1, 1] -> Linear(1, d)); sinusoidal
positions (no parameters); per layer x = norm1(x + attn(x)), FiLM, x = norm2(x + ff(x)), FiLM, with
FiLM x·scale + shift from the time embedding; then residual feed-forward blocks with FiLM; then
Linear(d, S) plus the one-hot input (a residual toward "x0 = x_t").

tauLDR's wrapper (`SequenceTransformer.forward`) calls the network with `times.long()`: every t in
[0, 1) becomes 0 (and t = 1, where samplers start, becomes 1, as in tauLDR's own sampler), so the
published piano model, trained on t < 1, saw the time as 0 only. `long_times` keeps that behaviour; it
is on for published checkpoints (their weights were trained so) and off for the project's models,
which see t.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.tauldr import timestep_embedding


@dataclass
class TransformerConfig:
    """Defaults: the published piano model (tauLDR config/train/piano.py), 7,008,769 parameters."""

    S: int = 129  # states per token (MIDI 0-127 and rest)
    length: int = 256  # tokens per sequence (tauLDR's max_len = data.shape[0])
    num_layers: int = 6
    d_model: int = 128
    num_heads: int = 8
    dim_feedforward: int = 2048
    dropout: float = 0.1
    num_output_FFresiduals: int = 2
    time_scale_factor: float = 1000.0
    temb_dim: int = 128
    use_one_hot_input: bool = True
    long_times: bool = False  # t.long() before embedding (the published wrapper's behaviour)

    def __post_init__(self):
        if self.S < 2 or self.length < 1:
            raise ValueError(f"tauLDR transformer: S must be >= 2 and length >= 1, got S={self.S}, length={self.length}")
        if self.d_model % self.num_heads or self.d_model % 2:
            raise ValueError(f"tauLDR transformer: d_model {self.d_model} must be even and divisible by "
                             f"num_heads {self.num_heads}")

    def to_dict(self) -> dict:
        return asdict(self)


class EncoderLayer(nn.Module):
    """tauLDR's TransformerEncoderLayer (post-norm, ReLU, FiLM after each residual)."""

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int, dropout: float, temb_dim: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model, eps=1e-5)
        self.norm2 = nn.LayerNorm(d_model, eps=1e-5)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.film_from_temb = nn.Linear(temb_dim, 2 * d_model)

    def forward(self, x, temb):  # x [B, L, K], temb [B, temb_dim]
        K = x.shape[-1]
        film = self.film_from_temb(temb)[:, None]  # [B, 1, 2K]
        x = self.norm1(x + self.dropout1(self.self_attn(x, x, x, need_weights=False)[0]))
        x = film[..., :K] * x + film[..., K:]
        x = self.norm2(x + self.dropout2(self.linear2(self.dropout(F.relu(self.linear1(x))))))
        return film[..., :K] * x + film[..., K:]


class FFResidual(nn.Module):
    def __init__(self, d_model: int, hidden: int, temb_dim: int):
        super().__init__()
        self.linear1 = nn.Linear(d_model, hidden)
        self.linear2 = nn.Linear(hidden, d_model)
        self.norm = nn.LayerNorm(d_model, eps=1e-5)
        self.film_from_temb = nn.Linear(temb_dim, 2 * d_model)

    def forward(self, x, temb):
        K = x.shape[-1]
        film = self.film_from_temb(temb)[:, None]
        x = self.norm(x + self.linear2(F.relu(self.linear1(x))))
        return film[..., :K] * x + film[..., K:]


class TauLDRSequenceNet(nn.Module):
    """Modules registered in the published order, so parameters() runs in the order of tauLDR's EMA
    shadow list, and state-dict keys are the published ones without the `net.` prefix."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = c = config
        position = torch.arange(c.length).unsqueeze(1)
        div = torch.exp(torch.arange(0, c.d_model, 2) * (-math.log(10000.0) / c.d_model))
        pe = torch.zeros(1, c.length, c.d_model)
        pe[0, :, 0::2], pe[0, :, 1::2] = torch.sin(position * div), torch.cos(position * div)
        self.register_buffer("pe", pe, persistent=False)  # tauLDR keeps it outside the state dict too
        self.pos_dropout = nn.Dropout(c.dropout)
        self.encoder_layers = nn.ModuleList(
            EncoderLayer(c.d_model, c.num_heads, c.dim_feedforward, c.dropout, 4 * c.temb_dim) for _ in range(c.num_layers))
        self.output_resid_layers = nn.ModuleList(
            FFResidual(c.d_model, c.dim_feedforward, 4 * c.temb_dim) for _ in range(c.num_output_FFresiduals))
        self.output_linear = nn.Linear(c.d_model, c.S)
        self.input_embedding = nn.Linear(c.S if c.use_one_hot_input else 1, c.d_model)
        self.temb_net = nn.Sequential(nn.Linear(c.temb_dim, c.dim_feedforward), nn.ReLU(),
                                      nn.Linear(c.dim_feedforward, 4 * c.temb_dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x [B, L] long, t [B] -> logits [B, L, S] float32."""
        c = self.config
        B, L = x.shape
        if L != c.length:
            raise ValueError(f"tauLDR transformer: sequences of length {L}, but the network was built for {c.length} "
                             f"(experiment.length must match the model)")
        t = t.long() if c.long_times else t.float()
        temb = self.temb_net(timestep_embedding(t * c.time_scale_factor, c.temb_dim))  # [B, 4·temb_dim]
        one_hot = F.one_hot(x, c.S).float()  # [B, L, S]
        h = self.input_embedding(one_hot if c.use_one_hot_input else (2 * x.float() / c.S - 1).unsqueeze(-1))
        h = self.pos_dropout(h + self.pe[:, :L])
        for layer in self.encoder_layers:
            h = layer(h, temb)
        for layer in self.output_resid_layers:
            h = layer(h, temb)
        return self.output_linear(h) + one_hot
