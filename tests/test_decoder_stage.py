"""Stage `decoder`: temporal layers (and the discriminator) learn, the encoder does not; exact resume."""
import csv
import json

import pytest
import torch
from diffusers import AutoencoderKL
from safetensors.torch import load_file

from conftest import TINY_AE as AE
from videoldm.models.temporal_decoder import TemporalDecoder
from videoldm.training.config import parse_config
from videoldm.training.trainer import Trainer


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from videoldm.data.synthetic import make_generator
    from videoldm.data.synthetic.base import write_dataset

    tmp = tmp_path_factory.mktemp("decoder")
    write_dataset(make_generator("camera", frames=6, size=(16, 16), fps=8, seed=0), tmp / "camera", num=2)
    write_dataset(make_generator("shapes", frames=6, size=(16, 16), fps=8, seed=0), tmp / "shapes", num=3)
    # two folders mixed into one dataset
    data = {"path": [str(tmp / "camera"), str(tmp / "shapes")], "num_frames": 4, "fps": None, "size": [16, 16], "batch_size": 2,
            "frames_per_clip": 2}
    ae = Trainer(parse_config({"stage": "autoencoder", "data": data, "model": {"config": AE},
                               "run": {"max_steps": 2, "checkpoint_every": 0, "output_dir": str(tmp / "ae")}})).train()
    return tmp, data, ae


def decoder_config(tmp, data, ae, name, **run):
    return parse_config({
        "stage": "decoder", "data": data,
        "model": {"autoencoder": str(ae), "temporal": {"alpha_init": 0.5}, "disc_start": 2,
                  "discriminator": {"channels": 8, "num_layers": 1}},
        "optim": {"lr": 1e-3, "ema_decay": 0.9},
        "run": {"max_steps": 4, "checkpoint_every": 2, "log_every": 1, "seed": 1, "output_dir": str(tmp / name), **run}})


def logged(run_dir):
    with open(run_dir / "log.csv") as f:
        return list(csv.DictReader(f))


def test_decoder_stage_trains_temporal_layers_and_discriminator_only(setup):
    tmp, data, ae = setup
    trainer = Trainer(decoder_config(tmp, data, ae, "run"))
    assert len(trainer.stage.dataset) == 5 and "shapes" in str(trainer.stage.dataset.record(4)["path"])
    final = trainer.train()
    rows = logged(tmp / "run")
    assert rows[0]["d_loss"] == "" and rows[-1]["d_loss"] != ""  # the discriminator starts at step 2
    assert all(torch.isfinite(torch.tensor(float(r["loss"]))) for r in rows)
    index = json.loads((final / "videoldm.json").read_text())
    assert index["stage"] == "decoder" and set(index["alphas"]) and "vae" not in index
    # the export is the temporal layers alone, and loads onto the untouched autoencoder
    vae = AutoencoderKL.from_pretrained(ae / "vae")
    decoder = TemporalDecoder.from_autoencoder(vae, temporal_layers=final / "temporal_decoder")
    assert any(abs(a - 0.5) > 1e-6 for a in decoder.alphas().values())
    trained = load_file(tmp / "run" / "checkpoint-00000004" / "trained.safetensors")
    assert trained and all(k.startswith(("decoder.temporal_layers.", "discriminator.")) for k in trained)
    assert any(k.startswith("discriminator.") for k in trained)
    assert (tmp / "run" / "samples" / "decoder-00000004.gif").is_file()


def test_decoder_stage_resumes_exactly(setup):
    tmp, data, ae = setup
    Trainer(decoder_config(tmp, data, ae, "whole")).train()
    Trainer(decoder_config(tmp, data, ae, "cut", max_steps=2)).train()
    resumed = Trainer(decoder_config(tmp, data, ae, "cut"))
    assert resumed.resume()
    resumed.train()
    whole, cut = logged(tmp / "whole"), logged(tmp / "cut")
    for a, b in zip(whole[2:], cut[2:]):
        assert a["step"] == b["step"] and float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-5, abs=1e-7)


def test_decoder_stage_checks_its_inputs_before_training(setup, tmp_path):
    tmp, data, ae = setup
    cfg = decoder_config(tmp, data, ae, "bad")
    cfg.model.disc_loss = "wasserstein"
    with pytest.raises(ValueError, match="disc_loss"):
        Trainer(cfg)
    cfg = decoder_config(tmp, data, ae, "bad")
    cfg.model.autoencoder = str(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="autoencoder"):
        Trainer(cfg)


def test_temporal_weight_adds_the_frame_difference_error(setup):
    from videoldm.training.stages.decoder import DecoderModule

    tmp, data, ae = setup
    stage = Trainer(decoder_config(tmp, data, ae, "tw")).stage
    video = stage.dataset[0][0][None]
    eps = torch.zeros(1, 4, video.shape[2], video.shape[3] // 2, video.shape[4] // 2)
    plain, logs = stage.module(video, eps, adversarial=False)
    options = stage.config.model
    options.temporal_weight = 2.0
    weighted, logs = DecoderModule(stage.decoder, stage.discriminator, None, options)(video, eps, adversarial=False)
    assert logs["temporal_l1"] > 0
    # `plain` ran through the prepared module: in bf16 where the CPU computes it (mixed_precision auto)
    assert torch.allclose(weighted, plain + 2.0 * logs["temporal_l1"], rtol=1e-2)


def test_a_decoder_run_goes_on_from_a_decoder_export(setup, tmp_path):
    tmp, data, ae = setup
    vae = AutoencoderKL.from_pretrained(ae / "vae")
    start = Trainer(decoder_config(tmp, data, ae, "start", max_steps=2, checkpoint_every=0)).train()
    cfg = decoder_config(tmp, data, ae, "on")
    cfg.model.init_temporal = str(start)
    stage = Trainer(cfg).stage  # before any step: the export's temporal layers, not fresh ones
    exported = TemporalDecoder.from_autoencoder(vae, temporal_layers=start / "temporal_decoder")
    assert stage.decoder.alphas() == pytest.approx(exported.alphas())
    assert any(abs(a - 0.5) > 1e-6 for a in exported.alphas().values())  # trained: not the fresh value
    for (k, a), (_, b) in zip(stage.decoder.temporal_layers.state_dict().items(),
                              exported.temporal_layers.state_dict().items()):
        assert torch.equal(a, b), k

    # an export that fine-tuned the image decoder too: refused unless this run trains (and so exports) it as well
    whole = decoder_config(tmp, data, ae, "whole-start", max_steps=2, checkpoint_every=0)
    whole.model.train_decoder = True
    whole_export = Trainer(whole).train()
    cfg = decoder_config(tmp, data, ae, "whole-on")
    cfg.model.init_temporal = str(whole_export)
    with pytest.raises(ValueError, match="train_decoder: true"):
        Trainer(cfg)
    cfg.model.train_decoder = True
    stage = Trainer(cfg).stage
    tuned = AutoencoderKL.from_pretrained(whole_export / "vae")
    assert all(torch.equal(a, b) for a, b in zip(stage.decoder.vae.decoder.state_dict().values(),
                                                 tuned.decoder.state_dict().values()))
    assert not all(torch.equal(a, b) for a, b in zip(tuned.decoder.state_dict().values(),
                                                     vae.decoder.state_dict().values()))  # it was trained
    assert all(torch.equal(a, b) for a, b in zip(stage.decoder.vae.encoder.state_dict().values(),
                                                 vae.encoder.state_dict().values()))  # the encoder stays ours

    AutoencoderKL.from_pretrained(ae / "vae").half().save_pretrained(tmp_path / "half" / "vae")
    cfg = decoder_config(tmp, data, tmp_path / "half", "half-on")  # the same encoder, stored as a shipped one is
    cfg.model.init_temporal, cfg.model.train_decoder = str(whole_export), True
    assert Trainer(cfg).stage.decoder.vae.encoder.conv_in.weight.dtype == torch.float32
    other = Trainer(parse_config({"stage": "autoencoder", "data": data, "model": {"config": AE}, "run": {
        "max_steps": 1, "checkpoint_every": 0, "seed": 5, "output_dir": str(tmp_path / "other-ae")}})).train()
    cfg = decoder_config(tmp, data, other, "other-on")
    cfg.model.init_temporal, cfg.model.train_decoder = str(whole_export), True
    with pytest.raises(ValueError, match="another encoder"):  # shapes fit, weights do not: refused, not mixed
        Trainer(cfg)

    for wrong, message in ((ae, "not a decoder export"), (tmp_path / "missing", "not a decoder export")):
        cfg = decoder_config(tmp, data, ae, "wrong")
        cfg.model.init_temporal = str(wrong)
        with pytest.raises(ValueError, match=message):
            Trainer(cfg)
