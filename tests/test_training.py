"""The trainer: strict configs, exact resume after kill -9, data-parallel gradients equal to one process."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from videoldm.training.config import load_config, parse_config

REPO = Path(__file__).resolve().parents[1]

TINY_AE = {
    "stage": "autoencoder",
    "data": {"num_frames": 4, "fps": None, "size": [16, 16], "batch_size": 2, "frames_per_clip": 2},
    "model": {"config": {"block_out_channels": [8, 16], "down_block_types": ["DownEncoderBlock2D"] * 2,
                         "up_block_types": ["UpDecoderBlock2D"] * 2, "layers_per_block": 1,
                         "latent_channels": 4, "norm_num_groups": 4, "sample_size": 16}},
    "optim": {"lr": 1e-3, "warmup_steps": 2, "schedule": "cosine", "ema_decay": 0.9},
    "run": {"max_steps": 6, "checkpoint_every": 3, "log_every": 1, "sample_every": 0, "seed": 3},
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from videoldm.data.synthetic import make_generator
    from videoldm.data.synthetic.base import write_dataset

    root = tmp_path_factory.mktemp("shapes")
    write_dataset(make_generator("shapes", frames=6, size=(16, 16), fps=8, seed=0), root, num=6)
    return root


def recipe(tmp_path, clips, **run):
    cfg = json.loads(json.dumps(TINY_AE))
    cfg["data"]["path"] = str(clips)
    cfg["run"].update(output_dir=str(tmp_path / "run"), **run)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def losses(run_dir):
    import csv

    with open(Path(run_dir) / "log.csv") as f:
        return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(f)}


REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted(p for p in (REPO / "configs").rglob("*.yaml") if p.name != "shipped-metrics.yaml")  # not a recipe


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_committed_recipe_parses(recipe):
    """The recipes the docs tell users to run: a renamed key or a stage typo fails here, not an hour in."""
    config = load_config(recipe)  # what `videoldm train` reads
    assert config.run.max_steps > 0


def test_unknown_key_wrong_type_and_missing_dataset_fail_before_training(tmp_path):
    bad = json.loads(json.dumps(TINY_AE))
    bad["run"]["max_step"] = 5
    with pytest.raises(ValueError, match="run.max_step"):
        parse_config(bad)
    bad = json.loads(json.dumps(TINY_AE))
    bad["optim"]["lr"] = "fast"
    with pytest.raises(ValueError, match="optim.lr"):
        parse_config(bad)
    from videoldm.training.trainer import Trainer

    missing = json.loads(json.dumps(TINY_AE))
    missing["data"]["path"] = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        Trainer(parse_config(missing))


@pytest.mark.parametrize("key, value", [("data.batch_size", 0), ("optim.lr", -1e-4), ("optim.warmup_steps", -3),
                                        ("optim.ema_decay", 1.5), ("optim.betas", [0.9]), ("run.max_steps", 0),
                                        ("run.grad_accum", 0), ("run.checkpoint_every", -5), ("run.keep_last", -1)])
def test_values_that_cannot_train_are_refused_by_name(key, value):
    bad = json.loads(json.dumps(TINY_AE))
    section, name = key.split(".")
    bad[section][name] = value
    with pytest.raises(ValueError, match=f"^{re.escape(key)} must be .*; got {re.escape(repr(value))}$"):
        parse_config(bad)
    ok = json.loads(json.dumps(TINY_AE))
    ok["optim"]["ema_decay"] = None  # an optional setting left off passes
    parse_config(ok)


def test_latent_channel_mismatch_is_an_error_before_training(tmp_path, clips):
    from diffusers import AutoencoderKL

    from videoldm.training.trainer import Trainer

    AutoencoderKL(**TINY_AE["model"]["config"]).save_pretrained(tmp_path / "vae")
    cfg = parse_config({
        "stage": "image", "data": {"path": str(clips), "num_frames": 4, "fps": None, "size": [16, 16]},
        "model": {"autoencoder": str(tmp_path / "vae"), "conditioning": "none",
                  "unet": {"in_channels": 3, "out_channels": 3, "block_out_channels": [16, 32],
                           "down_block_types": ["DownBlock2D"] * 2, "up_block_types": ["UpBlock2D"] * 2,
                           "norm_num_groups": 8, "sample_size": 8}},
        "run": {"output_dir": str(tmp_path / "run")}})
    with pytest.raises(ValueError, match="latent channels"):
        Trainer(cfg)


def run_cli(*args, **popen):
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "33554432", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "videoldm", "train", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **popen)


def test_resume_after_kill_matches_an_uninterrupted_run(tmp_path, clips):
    straight = recipe(tmp_path / "a", clips, max_steps=40)
    assert run_cli(str(straight)).wait() == 0
    expected = losses(tmp_path / "a" / "run")
    assert sorted(expected) == list(range(1, 41))

    killed = recipe(tmp_path / "b", clips, max_steps=40)
    run_dir = tmp_path / "b" / "run"
    proc = run_cli(str(killed))
    deadline = time.time() + 120
    while not (run_dir / "checkpoint-00000003").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up: a real crash
    assert proc.wait() == -signal.SIGKILL
    from videoldm.training.checkpoint import list_checkpoints

    resumed_from = int(list_checkpoints(run_dir)[-1].name.split("-")[1])
    assert resumed_from < 40
    proc = run_cli(str(killed), "--resume")
    assert proc.wait() == 0, proc.stderr.read().decode()[-2000:]
    got = losses(run_dir)
    assert sorted(got) == list(range(1, 41))
    for step in range(resumed_from + 1, 41):
        assert got[step] == pytest.approx(expected[step], rel=1e-5, abs=1e-7), step
    assert len(list_checkpoints(run_dir)) <= 3  # keep_last


def test_two_process_data_parallel_gradients_equal_one_process(tmp_path, clips):
    results = {}
    for processes, per_process in ((1, 4), (2, 2)):  # the same global batch of 4 clips
        cfg = json.loads(json.dumps(TINY_AE))
        cfg["data"].update(path=str(clips), batch_size=per_process)
        cfg["run"]["output_dir"] = str(tmp_path / f"run{processes}")
        cfg["run"]["mixed_precision"] = "no"  # exact float32 sums, whatever the CPU (auto is bf16 where native)
        recipe_file = tmp_path / f"recipe{processes}.json"
        recipe_file.write_text(json.dumps(cfg))
        out = tmp_path / f"grads{processes}.pt"
        launcher = [sys.executable] if processes == 1 else [
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        done = subprocess.run([*launcher, str(REPO / "tests" / "ddp_grads.py"), str(recipe_file), str(out)],
                              cwd=REPO, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[:4000]
        results[processes] = torch.load(out, weights_only=True)
    one, two = results[1], results[2]
    assert two["processes"] == 2
    assert one["loss"] == pytest.approx(two["loss"], rel=1e-5)
    assert one["grads"].keys() == two["grads"].keys() and len(one["grads"]) > 10
    for name, g in one["grads"].items():
        assert torch.allclose(g, two["grads"][name], rtol=1e-4, atol=1e-7), name


def test_a_latent_cache_gives_windows_of_the_recipe_length_reproducibly(tmp_path):
    from videoldm.training.data import LatentCache

    latents = torch.arange(3 * 16, dtype=torch.float32).view(3, 1, 16, 1, 1).expand(3, 4, 16, 2, 2).contiguous()
    LatentCache.write(tmp_path / "cache", latents, [{"caption": f"c{i}"} for i in range(3)], {})
    full = LatentCache(tmp_path / "cache")
    assert torch.equal(full[1][0], latents[1])  # same length: the whole clip
    short = LatentCache(tmp_path / "cache", num_frames=13, seed=0)
    starts = set()
    for epoch in range(8):
        short.set_epoch(epoch)
        clip, meta = short[2]
        start = int(clip[0, 0, 0, 0]) - 32
        assert clip.shape == (4, 13, 2, 2) and torch.equal(clip, latents[2, :, start:start + 13]) and meta["caption"] == "c2"
        starts.add(start)
        again = LatentCache(tmp_path / "cache", num_frames=13, seed=0)
        again.set_epoch(epoch)
        assert torch.equal(again[2][0], clip)  # the same window for the same (seed, epoch, clip)
    assert len(starts) > 1
    with pytest.raises(ValueError, match="16 frames"):
        LatentCache(tmp_path / "cache", num_frames=20)


def test_a_checkpoint_exports_as_the_final_model_would(tmp_path, clips):
    """`train --export-checkpoint`: the last checkpoint's export equals `final/` (both the EMA weights of
    the same step), and the run folder is left as it was."""
    from safetensors.torch import load_file

    from videoldm.cli import main

    path = recipe(tmp_path, clips, max_steps=6)
    assert main(["train", str(path)]) == 0
    run_dir = tmp_path / "run"
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    out = main_export(path, run_dir / "checkpoint-00000006", tmp_path / "exported")
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before
    assert json.loads((out / "videoldm.json").read_text())["stage"] == "autoencoder"
    final = load_file(run_dir / "final" / "vae" / "diffusion_pytorch_model.safetensors")
    got = load_file(out / "vae" / "diffusion_pytorch_model.safetensors")
    assert final.keys() == got.keys() and all(torch.equal(final[k], got[k]) for k in final)
    earlier = load_file(main_export(path, run_dir / "checkpoint-00000003", tmp_path / "at3") / "vae" /
                        "diffusion_pytorch_model.safetensors")
    assert any(not torch.equal(final[k], earlier[k]) for k in final)  # another step, other weights


def main_export(path, checkpoint, out):
    from videoldm.cli import main

    assert main(["train", str(path), "--export-checkpoint", str(checkpoint), "--out", str(out)]) == 0
    return out


def test_ctrl_c_finishes_the_step_saves_it_and_the_resumed_run_matches(tmp_path, clips):
    """SIGINT mid-step: that step completes, is checkpointed (checkpoint_every is off), the handler is put
    back, and resuming gives the uninterrupted run's losses."""
    from videoldm.training.trainer import Trainer, TrainingInterrupted, train

    def config(name):
        return load_config(recipe(tmp_path / name, clips, max_steps=6, checkpoint_every=0))

    straight = train(config("a"))
    expected = losses(straight.parent)

    trainer = Trainer(config("b"))
    loss = trainer.stage.loss

    def interrupted_loss(*args, **kwargs):
        if trainer.stage.step == 2:  # computing step 3
            os.kill(os.getpid(), signal.SIGINT)
        return loss(*args, **kwargs)

    trainer.stage.loss = interrupted_loss
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted, match="SIGINT at step 3") as stopped:
        trainer.train()
    assert signal.getsignal(signal.SIGINT) is before
    run_dir = tmp_path / "b" / "run"
    assert stopped.value.checkpoint == run_dir / "checkpoint-00000003"
    assert sorted(losses(run_dir)) == [1, 2, 3] and not (run_dir / "final").exists()
    train(config("b"), resume=True)
    got = losses(run_dir)
    assert sorted(got) == list(range(1, 7))
    for step in range(1, 7):
        assert got[step] == pytest.approx(expected[step], rel=1e-5, abs=1e-7), step


def wait_for_steps(proc, run_dir, steps: int, timeout: float = 180) -> None:
    """Until the run has logged ``steps`` steps (or the process ended, or ``timeout`` seconds passed)."""
    log, deadline = run_dir / "log.csv", time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        if log.exists() and len(log.read_text().splitlines()) > steps:  # a header line, then one per step
            break
        time.sleep(0.05)


def test_sigterm_stops_the_train_command_with_a_checkpoint_and_how_to_go_on(tmp_path, clips):
    """A scheduler's preemption: exit code 128 + 15, the last logged step is checkpointed, the message
    gives the command that goes on."""
    path = recipe(tmp_path, clips, max_steps=5000, checkpoint_every=0)
    run_dir = tmp_path / "run"
    proc = run_cli(str(path), "--set", "run.log_every=1")
    wait_for_steps(proc, run_dir, 2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    err = proc.stderr.read().decode()
    step = max(losses(run_dir))
    assert 2 <= step < 5000
    assert (run_dir / f"checkpoint-{step:08d}").is_dir()
    assert f"SIGTERM at step {step}" in err and f"videoldm train {path} --set run.log_every=1 --resume" in err


def test_sigterm_to_a_two_process_run_stops_both_at_one_step_with_a_checkpoint(tmp_path, clips):
    """torchrun forwards SIGTERM to every worker; they agree on the step to stop at (no rank waits for a
    collective the other left), and the main process saves it."""
    path = recipe(tmp_path, clips, max_steps=5000, checkpoint_every=0)
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "-m", "videoldm", "train", str(path), "--set", "data.batch_size=1"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for_steps(proc, run_dir, 2)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)  # torchrun's own exit status reports the signal it got
    err = proc.stderr.read().decode()
    step = max(losses(run_dir))
    assert (run_dir / f"checkpoint-{step:08d}").is_dir(), err[-3000:]
    assert err.count(f"SIGTERM at step {step}: checkpoint") == 1


def test_a_text_model_on_clips_without_captions_is_refused_before_training(chain, tmp_path):
    """An interrupted `data synth` leaves videos and no manifest: training on it was silently unconditional."""
    import shutil

    from conftest import run_stage

    ctmp, data, image, _ = chain
    shutil.copytree(data["path"], tmp_path / "clips")
    (tmp_path / "clips" / "manifest.jsonl").unlink()
    with pytest.raises(ValueError, match=r"stage temporal: a text-conditioned model, but no clip of 4 has a caption"):
        run_stage(tmp_path, "temporal", "temporal", {**data, "path": str(tmp_path / "clips")},
                  {"image_model": str(image)})
    run_stage(tmp_path, "temporal-ok", "temporal", data, {"image_model": str(image)})  # captions: fine


def test_resume_without_a_checkpoint_says_it_starts_at_step_0(tmp_path, clips, capsys):
    from videoldm.training.trainer import Trainer

    trainer = Trainer(load_config(recipe(tmp_path, clips)))
    assert trainer.resume() is False and trainer.step == 0
    assert f"no checkpoint in {tmp_path / 'run'} to resume from: starting at step 0" in capsys.readouterr().out


def test_ddp_searches_for_unused_parameters_only_where_a_stage_can_leave_some():
    """The search costs time on GPUs: on for the decoder (its discriminator waits for disc_start) and temporal
    stages with image batches, off elsewhere (the two-process test above runs without it); a recipe decides."""
    from videoldm.training.config import parse_config
    from videoldm.training.trainer import may_skip_parameters

    def recipe(stage, model=None, **run):
        return parse_config({"stage": stage, "model": model or {}, "run": run})

    assert not may_skip_parameters(recipe("autoencoder"))
    assert not may_skip_parameters(recipe("temporal", {"image_model": "x"}))
    assert may_skip_parameters(recipe("temporal", {"image_model": "x", "image_batch_prob": 0.2}))
    assert may_skip_parameters(recipe("decoder", {"autoencoder": "x"}))
    assert may_skip_parameters(recipe("autoencoder", find_unused_parameters=True))


def test_a_second_run_on_a_folder_in_use_stops_and_writes_nothing(tmp_path, clips):
    """Two runs on one output_dir would write over each other's log.csv and checkpoints (seen: a log full of
    NUL bytes when a stopped run was still saving as the next one started)."""
    from videoldm.training.config import load_config
    from videoldm.training.trainer import RunLock, Trainer

    path = recipe(tmp_path, clips, max_steps=2)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "log.csv").write_text("step,loss\n1,0.5\n")
    with RunLock(run_dir):  # another run holds the folder
        with pytest.raises(RuntimeError, match=rf"in use by another training run \(process {os.getpid()}\)"):
            Trainer(load_config(path)).train()
    assert (run_dir / "log.csv").read_text() == "step,loss\n1,0.5\n" and not list(run_dir.glob("checkpoint-*"))
    Trainer(load_config(path)).train()  # free again
    assert sorted(losses(run_dir)) == [1, 2]
