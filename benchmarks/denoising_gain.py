"""Does a trained video model use time? Its denoising loss on real clips against the image model's.

Sampled videos judge the whole stack at once; this looks inside. For a recipe's training clips it prints,
at a few noise levels and with the same noise in every column, the diffusion loss of
  - the image model frame by frame (alpha = 1),
  - the video model (temporal layers on),
  - for a context model: the given frames and the frames after them, with and without the context.
A temporal model that works has a clearly lower loss than frame by frame; context that conditions lowers
the loss of the frames *after* the given ones, not only of the given ones.

  python benchmarks/denoising_gain.py configs/driving/prediction.yaml runs/driving/prediction/final --clips 6
"""
import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from videoldm.training.config import load_config
from videoldm.training.data import _collate
from videoldm.training.stages import STAGES
from videoldm.training.stages.base import condition


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", help="the training recipe (its data, image model and stage)")
    parser.add_argument("model", help="an export of that recipe (…/final) or its temporal_layers folder")
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--given", type=int, default=2, help="a prediction model's context frames (an "
                        "interpolation model gets its keyframes)")
    parser.add_argument("--timesteps", type=int, nargs="+", default=[100, 300, 500, 700, 900])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    config = load_config(args.recipe)
    stage = STAGES[config.stage](config)
    folder = Path(args.model)
    stage.video_unet.load_temporal_layers(folder / "temporal_layers" if (folder / "temporal_layers").is_dir()
                                          else folder)
    model = stage.module.eval()
    n = args.clips
    batch = _collate([(*stage.dataset[i], i) for i in range(n)])
    latents = stage.latents_of(batch["x"])
    tokens = condition(stage.conditioner, batch, torch.zeros(n, dtype=torch.bool), "cpu")
    scheduler = stage.scheduler
    context = getattr(stage.video_unet, "context_encoder", None) is not None
    S = args.given
    header = f"{'t':>5}{'frame by frame':>16}{'video':>10}"
    if context:
        header += f"{'given: ctx':>12}{'no ctx':>13}{'others: ctx':>12}{'no ctx':>13}"
    print(f"{n} clips of {config.data.path}, latents {tuple(latents.shape[1:])}; "
          f"{scheduler.config.prediction_type} MSE")
    print(header)
    g = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        for step in args.timesteps:
            t = torch.full((n,), step)
            noise = torch.randn(latents.shape, generator=g)
            noisy = scheduler.add_noise(latents, noise, t)
            target = scheduler.get_velocity(latents, noise, t) \
                if scheduler.config.prediction_type == "v_prediction" else noise
            image = model(noisy, t, tokens, torch.ones(n, dtype=torch.bool))
            video = model(noisy, t, tokens, None)
            row = f"{step:>5}{F.mse_loss(image, target).item():>16.4f}{F.mse_loss(video, target).item():>10.4f}"
            if context:
                mask = stage.masks(batch["positions"], latents.shape[2], args.seed) if config.stage == "interpolation" \
                    else (torch.arange(latents.shape[2])[None] < S).float().expand(n, -1)
                given = model(noisy, t, tokens, None, latents, mask)
                for frames in (mask.bool(), ~mask.bool()):  # (n, T): the given frames, then the others
                    keep = frames[:, None, :, None, None].expand_as(target)
                    row += f"{F.mse_loss(given[keep], target[keep]).item():>12.4f}" \
                           f"{F.mse_loss(video[keep], target[keep]).item():>13.4f}"
            print(row, flush=True)


if __name__ == "__main__":
    main()
