"""Time a distilling fine-tuning step with the teacher run live against its logits looked up.

Each worker keeps the teacher's logits per training image (``TrialContext.teacher_table``); this
prints the per-step time of the two ways on the experiment's reference, unpruned and 50% pruned
(batch of ``finetune.batch_size``, minimum of three runs of 30 steps, rows filled beforehand).

Run:
    python experiments/teacher_steps.py experiments/fashion_mnist.yaml \\
        model.checkpoint=checkpoints/refnet-fmnist-e12.pt [finetune.teacher.kwargs.width=48 ...]
"""

from __future__ import annotations

import copy
import sys

from autocompress.backend import FinetuneSettings, finetune, prune_channels
from autocompress.config import load_experiment
from autocompress.plan import DistillPlan
from autocompress.study import experiment_task
from autocompress.worker import trial_context

STEPS, RUNS = 30, 3


def main(argv: list[str]) -> None:
    path = argv[0] if argv and argv[0].endswith(".yaml") else "experiments/fashion_mnist.yaml"
    config = load_experiment(path, [a for a in argv if "=" in a])
    _, _, task = experiment_task(config)
    ctx = trial_context(task)
    batch, distill = config.finetune.batch_size, DistillPlan(2.0, alpha=0.9)
    teacher_params = sum(p.numel() for p in ctx.teacher.parameters())
    print(f"teacher: {teacher_params} parameters; batch {batch}")
    for ratio in (0.0, 0.5):
        student = copy.deepcopy(ctx.model)
        if ratio:
            ratios = {layer.name: ratio for layer in ctx.layers if layer.name != ctx.head}
            prune_channels(student, ratios, ctx.example, head=ctx.head)
        for label in ("live", "table"):
            seconds = []
            for _ in range(RUNS + (label == "table")):  # the table's first run fills its rows
                stream = (
                    ctx.data.train_stream(batch, 0)
                    if label == "live"
                    else ctx.finetune_stream(batch, 0, distils=True)
                )
                settings = FinetuneSettings(steps=STEPS)
                _, report = finetune(
                    copy.deepcopy(student), ctx.teacher, {}, distill, stream, settings
                )
                seconds.append(report.seconds / STEPS)
            best = min(seconds[-RUNS:])
            print(f"pruned {ratio:.0%}, teacher {label}: {1000 * best:.0f} ms per step")


if __name__ == "__main__":
    main(sys.argv[1:])
