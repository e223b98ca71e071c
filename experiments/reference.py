"""Train (or reuse) an experiment's fp32 reference and print its learning curve.

The search distils every compressed model from this reference, so it should be trained to
convergence: a reference stopped early lets plain fine-tuning "win" by simply training longer.
The checkpoint is cached by its training config (``model.train``), so the search reuses it.

Run:
    python experiments/reference.py experiments/fashion_mnist.yaml model.train.epochs=12
    # then search with the same override, or point model.checkpoint at the printed path
    python experiments/reference.py experiments/vit_fashion_mnist.yaml --device=cuda
    # trains on a GPU; copy the printed checkpoint into the CPU machine's cache (same slot name)
    python experiments/reference.py experiments/fashion_mnist.yaml --teacher \
        finetune.teacher.kwargs.width=64 finetune.teacher.train.epochs=12
    # the experiment's distillation teacher (finetune.teacher) instead of its reference
"""

from __future__ import annotations

import json
import sys

from autocompress.config import load_experiment
from autocompress.models import load_reference, read_checkpoint


def main(argv: list[str]) -> None:
    path = argv[0] if argv and argv[0].endswith(".yaml") else "experiments/fashion_mnist.yaml"
    device = next((a.split("=", 1)[1] for a in argv if a.startswith("--device=")), "cpu")
    overrides = [a for a in argv if "=" in a and not a.startswith("--")]
    config = load_experiment(path, overrides)
    model, where = config.model, "model"
    if "--teacher" in argv:
        if config.finetune.teacher is None:
            sys.exit(f"{path}: --teacher needs finetune.teacher (add finetune.teacher.name=...)")
        model, where = config.finetune.teacher, "finetune.teacher"
    reference = load_reference(
        model, config.data, base_dir=config.base_dir, device=device, where=where
    )
    _, meta = read_checkpoint(reference.checkpoint)
    print(f"checkpoint: {reference.checkpoint}")
    print(
        f"val {reference.val_accuracy:.4f}  test {reference.test_accuracy:.4f}  "
        f"trained {meta.get('train_seconds', float('nan')):.0f} s on {meta.get('trained_on')}"
    )
    for point in meta.get("curve") or []:
        print(json.dumps(point))


if __name__ == "__main__":
    main(sys.argv[1:])
