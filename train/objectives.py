"""What a training run optimizes: a network family and its loss, by `train.objective`.

- score_entropy: SEDD's DiT (models/sedd.py) on x_t, denoising score entropy (SEDD);
- ct_elbo: a tauLDR network on x̃ (x_t after one forward jump), the continuous-time ELBO plus
  nll_weight × cross-entropy (tauLDR's GenericAux, one forward pass); arch.network picks the image
  UNet (models/tauldr.py, the default) or the sequence transformer (models/tauldr_sequence.py). With
  a condition prefix K (settings' prefix), the first K tokens stay data in x_t and x̃ and the loss
  covers the other positions only (tauLDR's ConditionalAux).
Each draws its network inputs on the CPU from the run's seeded generator (a run's data stream does not
depend on the device) and exports EMA weights in its loader's project format.
"""
from __future__ import annotations

from pathlib import Path

import torch
import yaml
from safetensors.torch import save as save_safetensors

from common.io import atomic_write_bytes, atomic_write_json
from models.sedd import SEDD, SEDDConfig, check_scale_by_sigma
from models.tauldr import TauLDRImageNet
from models.tauldr_loaders import ARCHITECTURES, export_tauldr
from models.tauldr_sequence import TauLDRSequenceNet
from train.losses import ct_elbo, forward_jump, score_entropy


class ScoreEntropy:
    def __init__(self, process, settings: dict):
        self.process = process
        if settings.get("prefix"):
            raise ValueError(f"train.objective=score_entropy does not train conditionally yet, but the experiment has "
                             f"a condition prefix of {settings['prefix']} tokens; use ct_elbo or no prefix")

    def build(self, arch: dict, source: str) -> SEDD:
        config = SEDDConfig(vocab_size=self.process.num_states, **arch)
        check_scale_by_sigma(config, self.process.kernel, source=source)
        return SEDD(config)

    def inputs(self, x0, t, generator) -> dict:
        return {"x_t": self.process.sample(x0, t, generator)}

    def loss(self, net, x0, t, inputs: dict, bf16: bool = False) -> torch.Tensor:
        """Mean over the batch of the loss per token."""
        x_t = inputs["x_t"]
        with torch.autocast(x_t.device.type, dtype=torch.bfloat16, enabled=bf16):
            log_score = net(x_t, self.process.sigma(t).float(), bf16=bf16)  # else its blocks turn autocast off
        return score_entropy(log_score.float(), x_t, x0, t, self.process).mean() / x0.shape[1]

    @staticmethod
    def export(ema_net: SEDD, out_dir: Path, process_spec: dict, experiment: str, note: dict) -> None:
        state = {k: v.detach().cpu().contiguous().clone() for k, v in ema_net.state_dict().items()}
        atomic_write_bytes(out_dir / "model.safetensors", save_safetensors(state))
        config = {"format": "jys-sedd", "experiment": experiment, "network": ema_net.config.to_dict(),
                  "process": process_spec}
        atomic_write_bytes(out_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False).encode())
        atomic_write_json(out_dir / "training.json", note)


class CTElbo:
    def __init__(self, process, settings: dict):
        self.process = process
        self.nll_weight = float(settings.get("nll_weight", 0.001))
        self.prefix = int(settings.get("prefix") or 0)

    def build(self, arch: dict, source: str) -> TauLDRImageNet | TauLDRSequenceNet:
        arch = dict(arch)
        network = arch.pop("network", "unet")
        if network not in ARCHITECTURES:
            raise ValueError(f"{source}: train.arch.network is {network!r}; expected one of {sorted(ARCHITECTURES)}")
        config = ARCHITECTURES[network](S=self.process.num_states, **arch)
        return TauLDRImageNet(config) if network == "unet" else TauLDRSequenceNet(config)

    def inputs(self, x0, t, generator) -> dict:
        K = self.prefix
        if not 0 <= K < x0.shape[1]:
            raise ValueError(f"condition prefix {K} must lie in [0, {x0.shape[1]}) (the sequence length)")
        x_t = torch.cat([x0[:, :K], self.process.sample(x0[:, K:], t, generator)], dim=1)
        return {"x_tilde": torch.cat([x0[:, :K], forward_jump(x_t[:, K:], t, self.process, generator)], dim=1)}

    def loss(self, net, x0, t, inputs: dict, bf16: bool = False) -> torch.Tensor:
        """The negative ELBO per sequence (tauLDR's scale: summed over generated positions) plus the weighted NLL."""
        x_tilde, K = inputs["x_tilde"], self.prefix
        with torch.autocast(x_tilde.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = net(x_tilde, t.float())
        return ct_elbo(logits[:, K:].float(), x_tilde[:, K:], x0[:, K:], t, self.process, self.nll_weight)

    @staticmethod
    def export(ema_net, out_dir: Path, process_spec: dict, experiment: str, note: dict) -> None:
        export_tauldr(ema_net, process_spec, out_dir, {**note, "experiment": experiment})


OBJECTIVES = {"score_entropy": ScoreEntropy, "ct_elbo": CTElbo}


def make_objective(name: str, process, settings: dict):
    if name not in OBJECTIVES:
        raise ValueError(f"unknown training objective {name!r} (train.objective); expected one of {sorted(OBJECTIVES)}")
    return OBJECTIVES[name](process, settings)
