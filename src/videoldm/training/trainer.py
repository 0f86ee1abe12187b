"""The training loop shared by every stage, on accelerate (one CPU, one GPU, DDP, many nodes).

Per optimizer step: ``grad_accum`` micro-batches, each a global batch of ``batch_size`` samples per
process; gradient clipping; AdamW; warm-up then the configured schedule; EMA of the trained
parameters. Losses go to a CSV and TensorBoard, checkpoints are atomic and resume exactly, and
Ctrl-C or SIGTERM checkpoint the step in progress before the run ends.
"""
from __future__ import annotations

import contextlib
import csv
import fcntl
import gc
import json
import os
import signal
import threading
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedDataParallelKwargs
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from ..inference.devices import resolve_device, resolve_mixed_precision
from .checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import make_loader
from .stages import STAGES


def may_skip_parameters(config: TrainConfig) -> bool:
    """Whether a step of this recipe can leave trainable parameters without a gradient, which DDP must then
    search for: ``run.find_unused_parameters``, or else the stages that do (the decoder's discriminator before
    ``disc_start``; a temporal stage's all-image batches skip the temporal layers)."""
    if config.run.find_unused_parameters is not None:
        return config.run.find_unused_parameters
    return config.stage == "decoder" or getattr(config.model, "image_batch_prob", 0.0) > 0


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM arrived: the step in progress was finished and checkpointed, nothing is lost."""

    def __init__(self, signum: int, step: int, checkpoint: Path | None):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        self.summary = f"{signal.Signals(signum).name} at step {step}: checkpoint {checkpoint} saved"
        super().__init__(f"{self.summary}; resume from it to go on")


class StopSignals:
    """Turns the first SIGINT (Ctrl-C) or SIGTERM (a scheduler's preemption) into a request to stop after
    the current step; a second one acts as usual. All processes of a run stop at the same step."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received: int | None = None
        self._previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # only there can Python take signals
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        self._restore()

    def _handle(self, signum, frame):
        self.received = signum
        self._restore()

    def _restore(self):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def agreed(self, accelerator: Accelerator) -> int | None:
        """The signal to stop on, if any process received one (a collective: call it on every process)."""
        if accelerator.num_processes == 1:
            return self.received
        flags = accelerator.gather(torch.tensor([self.received or 0], device=accelerator.device))
        return max(flags.tolist()) or None


class Trainer:
    def __init__(self, config: TrainConfig, accelerator: Accelerator | None = None):
        self.config = config
        run = config.run
        precision, why = resolve_mixed_precision(run.mixed_precision, resolve_device("auto"))
        if accelerator is None and AcceleratorState._shared_state.get("_mixed_precision", precision) != precision:
            # accelerate keeps one precision per process: a second trainer in one process (a chain of stages
            # in Python, whose recipes resolve to different precisions) starts accelerate's state anew
            AcceleratorState._reset_state()
        self.accelerator = accelerator or Accelerator(
            mixed_precision=precision,
            # without a GPU, tell accelerate so: under torchrun it then runs data-parallel on CPU (gloo)
            cpu=not (torch.cuda.is_available() or torch.backends.mps.is_available()),
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=may_skip_parameters(config))],
            log_with=None if run.log_with == "none" else run.log_with.split(","), project_dir=run.output_dir)
        if run.mixed_precision == "auto":  # recorded in the run's config.json as what it was
            self._log(f"run.mixed_precision auto: {precision} ({why})")
            run.mixed_precision = precision
        torch.manual_seed(run.seed)
        self.stage = STAGES[config.stage](config)  # builds and checks every model before any step
        self.run_dir = Path(run.output_dir)
        module = self.stage.module
        if config.run.gradient_checkpointing:
            for m in module.modules():
                if hasattr(m, "enable_gradient_checkpointing") and m is not module:
                    m.enable_gradient_checkpointing()
                    break
        self.params = [p for p in module.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError(f"stage {config.stage}: nothing to train")
        opt = config.optim
        optimizer = torch.optim.AdamW(self.params, lr=opt.lr, betas=tuple(opt.betas), weight_decay=opt.weight_decay)
        # stepped once per optimizer step by us (not by accelerate, which steps it once per process)
        self.lr_scheduler = get_scheduler(opt.schedule, optimizer, num_warmup_steps=opt.warmup_steps,
                                          num_training_steps=run.max_steps)
        self.model, self.optimizer = self.accelerator.prepare(module, optimizer)
        self.ema = EMAModel(self.params, decay=opt.ema_decay) if opt.ema_decay else None
        self.step, self.position = 0, 0

    # ---------------------------------------------------------------------------------- checkpoints
    def save(self) -> Path | None:
        self.accelerator.wait_for_everyone()
        if not self.accelerator.is_main_process:
            return None
        state = {"position": self.position, "optimizer": self.optimizer.state_dict(),
                 "lr_scheduler": self.lr_scheduler.state_dict(),
                 "ema": self.ema.state_dict() if self.ema else None}
        return save_checkpoint(self.run_dir, self.step, state, self.stage.module, self.config.run.keep_last)

    def resume(self, checkpoint: str | Path | None = None) -> bool:
        """Continues from ``checkpoint`` (or the latest in the run folder); False when there is none."""
        path = Path(checkpoint) if checkpoint else (list_checkpoints(self.run_dir) or [None])[-1]
        if path is None:
            self._log(f"no checkpoint in {self.run_dir} to resume from: starting at step 0")
            return False
        state = load_checkpoint(path, self.stage.module)
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        if self.ema and state["ema"]:
            self.ema.load_state_dict(state["ema"])
        if state["rng"]:
            torch.set_rng_state(state["rng"]["torch"])
        self.step, self.position = state["step"], state["position"]
        self._log(f"resumed from {path} at step {self.step}")
        return True

    # ------------------------------------------------------------------------------------- training
    def train(self) -> Path:
        run, acc = self.config.run, self.accelerator
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with RunLock(self.run_dir) if acc.is_main_process else contextlib.nullcontext():
            if acc.is_main_process:
                (self.run_dir / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2))
            global_batch = self.config.data.batch_size * acc.num_processes
            batches = self.batches()
            logger = _Logs(self.run_dir, acc, resume_step=self.step)
            bar = tqdm(total=run.max_steps, initial=self.step, disable=not acc.is_local_main_process,
                       desc=f"{self.config.stage}", dynamic_ncols=True)
            self.model.train()
            with StopSignals() as signals:
                self._loop(batches, logger, bar, signals, global_batch)
            bar.close()
            logger.close()
            self.save()
            return self.export()

    def _loop(self, batches, logger, bar, signals: StopSignals, global_batch: int) -> None:
        run, acc = self.config.run, self.accelerator
        while self.step < run.max_steps:
            start = time.perf_counter()
            self.stage.step = self.step
            total, extras = self.backward(batches)
            if self.config.optim.max_grad_norm:
                acc.clip_grad_norm_(self.params, self.config.optim.max_grad_norm)
            self.optimizer.step()
            self.lr_scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            if self.ema:
                self.ema.step(self.params)
            self.step += 1
            seconds = time.perf_counter() - start
            logger.write(self.step, {"loss": total, "lr": self.lr_scheduler.get_last_lr()[0],
                                     "samples_per_s": global_batch * run.grad_accum / seconds, **extras},
                         every=run.log_every)
            bar.set_postfix(loss=f"{total:.4f}", samples_s=f"{global_batch * run.grad_accum / seconds:.1f}")
            bar.update(1)
            stop = signals.agreed(acc)
            if stop or (run.checkpoint_every and self.step % run.checkpoint_every == 0):
                saved = self.save()
            if stop:
                bar.close()
                logger.close()
                raise TrainingInterrupted(stop, self.step, saved)
            if run.sample_every and self.step % run.sample_every == 0 and acc.is_main_process:
                with self._ema_weights():
                    self.stage.sample(self.run_dir / "samples", self.step)

    def backward(self, batches) -> tuple[float, dict]:
        """Accumulates the gradients of one optimizer step (``grad_accum`` global batches); returns the
        loss averaged over micro-batches and processes, and the stage's other logged values."""
        acc, accum = self.accelerator, self.config.run.grad_accum
        total, extras = 0.0, {}
        for micro in range(accum):
            batch = next(batches)
            with (contextlib.nullcontext() if micro == accum - 1 else acc.no_sync(self.model)), acc.autocast():
                loss, logs = self.stage.loss(self.model, batch, self.config.run.seed)
            acc.backward(loss / accum)
            total += acc.reduce(loss.detach(), "mean").item() / accum
            for k, v in logs.items():
                extras[k] = extras.get(k, 0.0) + acc.reduce(v, "mean").item() / accum
            self.position += self.config.data.batch_size * acc.num_processes
        return total, extras

    def batches(self):
        """This process's batches from the current stream position on."""
        acc, data = self.accelerator, self.config.data
        return iter(make_loader(self.stage.dataset, data.seed, self.position, data.batch_size,
                                acc.process_index, acc.num_processes, data.num_workers))

    def export(self, directory: str | Path | None = None, samples: bool = True) -> Path:
        """Writes the trained model (EMA weights when there is an EMA) to ``directory`` (default
        ``output_dir/final``), with samples in ``output_dir/samples`` unless ``samples`` is False."""
        final = Path(directory) if directory else self.run_dir / "final"
        if self.accelerator.is_main_process:
            final.mkdir(parents=True, exist_ok=True)
            with self._ema_weights():
                self.stage.export(final)
                if samples:
                    self.stage.sample(self.run_dir / "samples", self.step)
        self.accelerator.wait_for_everyone()
        return final

    @contextlib.contextmanager
    def _ema_weights(self):
        if self.ema is None:
            yield
            return
        self.ema.store(self.params)
        self.ema.copy_to(self.params)
        try:
            yield
        finally:
            self.ema.restore(self.params)

    def _log(self, message: str) -> None:
        if self.accelerator.is_main_process:
            tqdm.write(message)


class RunLock:
    """Holds ``run_dir/.lock`` for the life of a run: a second run on the same folder (its checkpoints and
    ``log.csv``) stops at once with the first one's process id, instead of the two writing over each other."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / ".lock"

    def __enter__(self) -> "RunLock":
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.seek(0)
            holder = self.file.read().strip() or "unknown"
            self.file.close()
            raise RuntimeError(f"{self.path.parent} is in use by another training run (process {holder}): wait "
                               "for it to stop, or give this one another run.output_dir") from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(str(os.getpid()))
        self.file.flush()
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


class _Logs:
    """``log.csv`` (every step, main process only; model cards and resumes read it) and accelerate's
    trackers (``run.log_with``, every ``every`` steps; TensorBoard by default, in ``output_dir/videoldm``)."""

    def __init__(self, run_dir: Path, accelerator: Accelerator, resume_step: int):
        self.accelerator, self.active = accelerator, accelerator.is_main_process
        if accelerator.log_with:
            accelerator.init_trackers("videoldm")
        if not self.active:
            return
        path = run_dir / "log.csv"
        rows = []
        if path.exists():  # keep the rows of the steps before the resume point
            with open(path) as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        self.file = open(path, "w+", newline="")
        self.fields = None
        self.writer = None
        self._pending = rows

    def write(self, step: int, values: dict, every: int) -> None:
        if step % max(every, 1) == 0:
            self.accelerator.log(values, step=step)
        if not self.active:
            return
        row = {"step": step, **{k: f"{v:.8g}" for k, v in values.items()}}
        if self.writer is None:
            self._start(list(row))
        elif set(row) - set(self.fields):  # a value that starts mid-run (e.g. the adversarial loss): widen the file
            self.file.seek(0)
            self._pending = list(csv.DictReader(self.file))
            self.file.seek(0)
            self.file.truncate()
            self._start(self.fields + [k for k in row if k not in self.fields])
        self.writer.writerow(row)
        self.file.flush()

    def _start(self, fields: list[str]) -> None:
        self.fields = fields
        self.writer = csv.DictWriter(self.file, fieldnames=fields, extrasaction="ignore")
        self.writer.writeheader()
        self.writer.writerows(self._pending)
        self._pending = []

    def close(self) -> None:
        for tracker in self.accelerator.trackers:  # not end_training(): it also ends the process group
            tracker.finish()
        if self.active:
            self.file.close()


def train(config: TrainConfig, resume: bool | str = False) -> Path:
    trainer = Trainer(config)
    if resume:
        trainer.resume(None if resume is True else resume)
    try:
        return trainer.train()
    finally:
        del trainer
        leave_process_group()


def leave_process_group() -> None:
    """Under torchrun, end the process group while Python is still whole.

    DDP's reducer keeps the gloo group alive; left to interpreter shutdown, its worker threads were
    destroyed still joinable and a rank aborted ("terminate called without an active exception")
    in about 1 run in 14 under load. Collecting the dropped trainer first, then destroying the group,
    ended that (0 in 50). So call it after dropping every reference to the `Trainer`.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        gc.collect()
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
