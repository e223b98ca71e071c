"""What a worker process loads once and reuses across trials: data, the fp32 model, the teacher,
the reference deployable.

Loading Fashion-MNIST, the reference checkpoint and realizing the fp32 reference deployable cost
seconds; trials cost tens of seconds; a worker runs many trials. So the context is cached per
process, keyed by the parts of the task that determine it.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from autocompress.backend import LayerInfo, fold_batchnorm, head_name, layer_inventory
from autocompress.config import ModelConfig
from autocompress.data import batches, endless_batches, endless_rows, load_splits, model_input
from autocompress.errors import DataError
from autocompress.measure import busy
from autocompress.runtimes import Deployable, Runtime, get_runtime
from autocompress.worker._task import Task

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class TrialData:
    """The data seam: built from our in-memory splits, or from a user's DataLoaders."""

    train_stream: Callable[[int, int], Iterator[Batch]]  # (batch_size, seed) -> endless
    val: Callable[[], Iterable[Batch]]
    test: Callable[[], Iterable[Batch]] | None
    input_shape: list[int]
    num_classes: int
    mean: float | None = None
    std: float | None = None
    # the training split in memory (images as the model takes them, labels): what the
    # teacher-logit table is indexed by; None for a user's loaders (they may augment)
    train_tensors: tuple[torch.Tensor, torch.Tensor] | None = None

    def calibration(self, n: int, batch_size: int) -> list[np.ndarray]:
        stream = self.train_stream(batch_size, 12345)
        return [x.numpy() for x, _ in itertools.islice(stream, n)]


@dataclass(frozen=True)
class UserObjects:
    """A user's own model and loaders (the Python API), instead of registry names."""

    model: nn.Module
    train_loader: Iterable[Batch]
    val_loader: Iterable[Batch]
    test_loader: Iterable[Batch] | None = None
    teacher: nn.Module | None = None  # distil from this model (None: the model itself)


RECENT_SITTINGS = 15


@dataclass
class TrialContext:
    data: TrialData
    model: nn.Module  # the fp32 reference: every plan prunes a copy of it
    teacher: nn.Module  # whose logits the students distil: ``model`` unless finetune.teacher
    example: torch.Tensor
    layers: list[LayerInfo]
    head: str | None
    runtime: Runtime
    calibration: list[np.ndarray]
    reference: Deployable  # the fp32 reference on the same runtime, timed beside each candidate
    reference_ms: list[float] = field(default_factory=list)  # its medians, sitting by sitting

    def usual_reference_ms(self) -> float | None:
        """The lower quartile of the fp32 reference's last ``RECENT_SITTINGS`` medians in this
        worker (three at least, else None): what a steady sitting's fp32 shows here. A low
        quantile, since a slow spell can fill a stretch of sittings and none runs faster than
        the machine can; recent ones only, so slow drift (FINDINGS: 10-25% over an hour) carries
        it along."""
        return usual_reference(self.reference_ms)

    def finetune_stream(
        self, batch_size: int, seed: int, *, distils: bool
    ) -> Iterator[tuple[torch.Tensor, ...]]:
        """The training batches a fine-tuning run draws, ``(x, y)``, or ``(x, y, teacher
        logits)`` where a distilling run can look its teacher's logits up instead of running
        the teacher each step (the same rows in the same order either way)."""
        table = self.teacher_table if distils else None
        if table is None or self.data.train_tensors is None:
            return self.data.train_stream(batch_size, seed)
        x, y = self.data.train_tensors
        rows = endless_rows((x, y, torch.arange(len(x))), batch_size, seed=seed)
        return ((bx, by, table.logits(index, bx)) for bx, by, index in rows)

    @functools.cached_property
    def teacher_table(self) -> TeacherTable | None:
        """This worker's table of the teacher's logits over the in-memory training split; None
        for a user's loaders (their batches may be augmented: an image's logits would change)
        or a table that would not fit comfortably in memory (a language model's vocabulary)."""
        if self.data.train_tensors is None:
            return None
        rows = len(self.data.train_tensors[0])
        if rows * self.data.num_classes * 4 > TEACHER_TABLE_BYTES:
            return None
        return TeacherTable(self.teacher, rows, self.data.num_classes)


TEACHER_TABLE_BYTES = 1 << 30


class TeacherTable:
    """The teacher's logits per training row, filled as rows are first drawn.

    The teacher is fixed and in eval mode, so its logits for an image never change, yet a
    distilling step ran its forward every step: with the reference teaching, 45% of a
    50%-pruned student's step on Fashion-MNIST, more with a larger teacher. Filling lazily, not
    all at once, means a short search never pays for rows it does not draw, and trials share
    the fine-tuning seed, so from the second trial on a run of the same length draws only rows
    already known. The fill runs on the measurement lock's busy side, as the step it replaces.
    """

    def __init__(self, teacher: nn.Module, rows: int, classes: int) -> None:
        self.teacher = teacher
        self.table = torch.zeros(rows, classes)
        self.known = torch.zeros(rows, dtype=torch.bool)

    def logits(self, index: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The logits of training rows ``index`` (whose images are ``x``)."""
        missing = ~self.known[index]
        if bool(missing.any()):
            with busy(), torch.no_grad():
                self.table[index[missing]] = self.teacher(x[missing]).float()
            self.known[index[missing]] = True
        return self.table[index]


def usual_reference(medians: Sequence[float]) -> float | None:
    """The lower quartile of the last ``RECENT_SITTINGS`` fp32 medians, oldest first (three at
    least, else None): see :meth:`TrialContext.usual_reference_ms`."""
    recent = list(medians)[-RECENT_SITTINGS:]
    return float(np.percentile(recent, 25)) if len(recent) >= 3 else None


def trial_context(task: Task, objects: UserObjects | None = None) -> TrialContext:
    if objects is not None:
        return _build_context(task, objects)
    plain = task.to_dict()
    parts = ("data", "model", "checkpoint", "target", "teacher_checkpoint")
    key = {k: plain[k] for k in parts} | {"finetune": {"teacher": plain["finetune"]["teacher"]}}
    return _cached_context(json.dumps(key, sort_keys=True))


@functools.lru_cache(maxsize=2)
def _cached_context(key: str) -> TrialContext:
    return _build_context(Task.from_dict(json.loads(key)), None)


def _build_context(task: Task, objects: UserObjects | None) -> TrialContext:
    with busy():
        data = splits_data(task) if objects is None else loader_data(objects)
        model = _reference(task, data) if objects is None else objects.model
        model = model.cpu().eval()
        teacher = _distillation_teacher(task, data, objects)
        teacher = model if teacher is None else teacher.cpu().eval()
        calibration = data.calibration(task.data.calibration_batches, task.data.batch_size)
        example = torch.from_numpy(calibration[0][:2])
        layers = layer_inventory(model, example)
        runtime = get_runtime(task.target.runtime)
        folded = _copy(model)
        fold_batchnorm(folded)
        reference = runtime.realize(folded, {}, calibration, task.target)
    return TrialContext(
        data, model, teacher, example, layers, head_name(layers), runtime, calibration, reference
    )


def splits_data(task: Task) -> TrialData:
    splits = load_splits(task.data)
    limit = task.val_limit or len(splits.val_x)
    vx, vy = splits.val_x[:limit], splits.val_y[:limit]
    return TrialData(
        train_stream=lambda bs, seed: endless_batches(
            splits.train_x, splits.train_y, bs, seed=seed
        ),
        val=lambda: batches(vx, vy, 500),
        test=lambda: batches(splits.test_x, splits.test_y, 500),
        input_shape=splits.input_shape,
        num_classes=splits.num_classes,
        mean=splits.mean,
        std=splits.std,
        train_tensors=(splits.train_x, splits.train_y),
    )


def loader_data(objects: UserObjects) -> TrialData:
    first = next(iter(objects.val_loader), None)
    if first is None:
        raise DataError("the validation loader yields no batches")
    x, _ = first
    objects.model.eval()
    with torch.no_grad():
        num_classes = int(objects.model(model_input(x[:1])).shape[1])

    def stream(batch_size: int, seed: int) -> Iterator[Batch]:
        torch.manual_seed(seed)
        while True:
            yield from ((model_input(bx), by) for bx, by in objects.train_loader)

    test = objects.test_loader
    return TrialData(
        train_stream=stream,
        val=lambda: ((model_input(bx), by) for bx, by in objects.val_loader),
        test=None if test is None else (lambda: ((model_input(bx), by) for bx, by in test)),
        input_shape=list(x.shape[1:]),
        num_classes=num_classes,
    )


def _reference(task: Task, data: TrialData) -> nn.Module:
    if task.checkpoint is None:
        raise DataError("task has neither a checkpoint nor user objects")
    return _load(task.model, task.checkpoint, data, "model")


def _distillation_teacher(
    task: Task, data: TrialData, objects: UserObjects | None
) -> nn.Module | None:
    """The separate teacher (``finetune.teacher``, or a user's ``study={'teacher': ...}``),
    None if the reference teaches."""
    if objects is not None:
        return objects.teacher
    spec = task.finetune.teacher
    if spec is None:
        return None
    if task.teacher_checkpoint is None:
        raise DataError("finetune.teacher is set but the task has no teacher checkpoint")
    return _load(spec, task.teacher_checkpoint, data, "finetune.teacher")


def _load(spec: ModelConfig, checkpoint: str, data: TrialData, where: str) -> nn.Module:
    from autocompress.models import build_model, read_checkpoint

    model = build_model(
        spec.name, data.input_shape, data.num_classes, spec.kwargs, builder=spec.builder
    )
    state, _ = read_checkpoint(Path(checkpoint))
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise DataError(
            f"checkpoint {checkpoint} does not fit {where} {spec.name!r}; delete it to "
            f"retrain or fix {where}.kwargs"
        ) from None
    return model


def _copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)
