"""Stage `decoder`: fine-tune a temporal decoder on video clips (Video LDM, section 3).

The encoder stays frozen, so latents, and every diffusion model trained on them, stay valid. The loss is
L1 reconstruction (plus optional terms: a perceptual distance, and ``temporal_weight`` times the L1 of the
frame differences, |Δx̂ - Δx|), and from ``disc_start`` on an adversarial term
from a 3D-convolution patch discriminator, weighted adaptively against the reconstruction. Generator and
discriminator share one optimizer and one backward pass: the generator's adversarial term sees the
discriminator's weights detached, the discriminator's term sees the reconstruction detached, so each
loss moves only its own side.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from torch import nn
from torch.func import functional_call

from ...data.io import write_gif
from ...export import is_export, load_autoencoder, read_index, reference, write_index
from ...inference.outputs import to_uint8
from ...models.discriminator import VideoDiscriminator, adaptive_weight, discriminator_loss, generator_loss
from ...models.frames import vae_scale_factor
from ...models.temporal_decoder import TemporalDecoder
from ..config import TrainConfig
from .base import Stage, build_dataset, per_sample


class DecoderModule(nn.Module):
    def __init__(self, decoder: TemporalDecoder, discriminator: VideoDiscriminator, perceptual, options):
        super().__init__()
        self.decoder, self.discriminator, self.perceptual = decoder, discriminator, perceptual
        self.options = options

    def forward(self, video: torch.Tensor, eps: torch.Tensor, adversarial: bool):
        o = self.options
        with torch.no_grad():  # the frozen encoder; the decoder learns on samples of its posterior
            frames = video.transpose(1, 2).flatten(0, 1)
            posterior = self.decoder.vae.encode(frames).latent_dist
            B, T = video.shape[0], video.shape[2]
            mean = posterior.mean.view(B, T, *posterior.mean.shape[1:]).transpose(1, 2)
            std = posterior.std.view(B, T, *posterior.std.shape[1:]).transpose(1, 2)
        recon = self.decoder(mean + std * eps.to(mean)).sample.float()
        rec = F.l1_loss(recon, video.float())
        logs = {"l1": rec.detach()}
        if o.temporal_weight:  # the error in how frames change: what flickers, even when each frame is close
            diff = F.l1_loss(recon[:, :, 1:] - recon[:, :, :-1], (video[:, :, 1:] - video[:, :, :-1]).float())
            rec = rec + o.temporal_weight * diff
            logs["temporal_l1"] = diff.detach()
        if self.perceptual is not None:
            p = self.perceptual(recon.transpose(1, 2).flatten(0, 1), video.float().transpose(1, 2).flatten(0, 1)).mean()
            rec = rec + o.perceptual_weight * p
            logs["perceptual"] = p.detach()
        if not adversarial:
            return rec, logs
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        g_adv = generator_loss(functional_call(self.discriminator, frozen, (recon,)), o.disc_loss)
        weight = o.disc_weight * adaptive_weight(rec, g_adv, recon) if torch.is_grad_enabled() else o.disc_weight
        d_loss = discriminator_loss(self.discriminator(video.float()), self.discriminator(recon.detach()),
                                    o.disc_loss)
        logs.update(g_adv=g_adv.detach(), d_loss=d_loss.detach(), adv_weight=torch.as_tensor(weight).detach())
        return rec + weight * g_adv + d_loss, logs


def _starting_point(m) -> tuple[Path | None, Path | None]:
    """What ``model.init_temporal`` (a decoder export) starts from: its temporal-layers folder, and its own
    autoencoder folder when it fine-tuned the image decoder too (None, None: fresh layers)."""
    if not m.init_temporal:
        return None, None
    root = Path(m.init_temporal)
    index = read_index(root) if is_export(root) else {}
    if index.get("stage") != "decoder":
        raise ValueError(f"model.init_temporal: {root} is not a decoder export (a run's final/ folder of stage "
                         "decoder, or a shipped decoder)")
    if index.get("vae") and not m.train_decoder:  # this run would export temporal layers only, losing that decoder
        raise ValueError(f"model.init_temporal: {root} fine-tuned the image decoder too; go on from it with "
                         "model.train_decoder: true")
    return root / index["temporal_decoder"], (root / index["vae"] if index.get("vae") else None)


class DecoderStage(Stage):
    def __init__(self, config: TrainConfig):
        self.config, m = config, config.model
        vae = load_autoencoder(m.autoencoder)
        layers, tuned = _starting_point(m)
        self.decoder = TemporalDecoder.from_autoencoder(vae, temporal_layers=layers, **m.temporal)
        if tuned is not None:  # the fine-tuned image decoder of the export gone on from; the encoder stays ours
            tuned = AutoencoderKL.from_pretrained(tuned)
            # compared in float16: a shipped autoencoder is the same encoder, stored in half precision
            if any(not torch.equal(a.half(), b.half()) for a, b in zip(tuned.encoder.state_dict().values(),
                                                                       vae.encoder.state_dict().values())):
                raise ValueError(f"model.init_temporal: {m.init_temporal} fine-tuned its decoder for another "
                                 f"encoder than model.autoencoder's ({m.autoencoder})")
            vae.decoder.load_state_dict(tuned.decoder.state_dict())
            if vae.post_quant_conv is not None:
                vae.post_quant_conv.load_state_dict(tuned.post_quant_conv.state_dict())
        if m.train_decoder:
            self.decoder.vae.decoder.requires_grad_(True)
            if self.decoder.vae.post_quant_conv is not None:
                self.decoder.vae.post_quant_conv.requires_grad_(True)
        self.discriminator = VideoDiscriminator(in_channels=vae.config.out_channels, **m.discriminator)
        perceptual = None
        if m.perceptual:
            if not Path(m.perceptual).is_file():
                raise FileNotFoundError(f"model.perceptual: {m.perceptual} not found (a TorchScript file taking "
                                        "two image batches in [-1, 1], e.g. LPIPS exported with torch.jit.script)")
            perceptual = torch.jit.load(m.perceptual).eval().requires_grad_(False)
        if m.disc_loss not in ("hinge", "non-saturating"):
            raise ValueError(f"model.disc_loss must be hinge or non-saturating, got {m.disc_loss!r}")
        self.dataset = build_dataset(config, need_pixels=True)
        self.module = DecoderModule(self.decoder, self.discriminator, perceptual, m)

    def loss(self, model, batch, seed: int):
        video = batch["x"].to(self.device)
        vae = self.decoder.vae.config
        f = vae_scale_factor(vae)
        shape = (vae.latent_channels, video.shape[2], video.shape[3] // f, video.shape[4] // f)
        eps = per_sample(batch["positions"], seed, 1, lambda g: torch.randn(shape, generator=g))
        return model(video, eps.to(self.device), self.step >= self.config.model.disc_start)

    def export(self, directory: Path) -> None:
        """The temporal layers (and the decoder when it was trained too); the encoder is referenced by path."""
        self.decoder.save_temporal_layers(directory / "temporal_decoder")
        index = {"stage": "decoder", "autoencoder": reference(self.config.model.autoencoder, directory),
                 "temporal_decoder": "temporal_decoder", "alphas": self.decoder.alphas()}
        if self.config.model.train_decoder:
            self.decoder.vae.save_pretrained(directory / "vae")
            index["vae"] = "vae"
        write_index(directory, index)

    def sample(self, directory: Path, step: int) -> None:
        """Ground truth | frame-by-frame decoder | temporal decoder, side by side."""
        self.decoder.eval()
        with torch.no_grad():
            clip = self.dataset[0][0][None].to(self.device)
            z = self.decoder.encode(clip)
            rows = [clip, self.decoder(z, image_only=True).sample, self.decoder(z).sample]
        side_by_side = torch.cat([r[0].transpose(0, 1).cpu() for r in rows], dim=-1)
        write_gif(directory / f"decoder-{step:08d}.gif", to_uint8(side_by_side), self.config.data.fps or 8)
        self.decoder.train()
