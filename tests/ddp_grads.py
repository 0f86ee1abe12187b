"""Run by test_training: one optimizer step's gradients of a recipe, saved by the main process.

    python tests/ddp_grads.py RECIPE.json OUT.pt                       # one process
    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_grads.py RECIPE.json OUT.pt
"""
import json
import sys

import torch

from videoldm.training.config import parse_config
from videoldm.training.trainer import Trainer, leave_process_group

torch.set_num_threads(1)
recipe, out = sys.argv[1], sys.argv[2]
trainer = Trainer(parse_config(json.load(open(recipe))))
loss, _ = trainer.backward(trainer.batches())
if trainer.accelerator.is_main_process:
    grads = {n: p.grad.detach().clone() for n, p in trainer.stage.module.named_parameters() if p.grad is not None}
    torch.save({"loss": loss, "grads": grads, "processes": trainer.accelerator.num_processes}, out)
del trainer
leave_process_group()
