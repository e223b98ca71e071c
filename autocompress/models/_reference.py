"""The fp32 reference model: trained once, cached by its training config, loaded safely.

The cache key is a hash of everything that changes the weights (model name and arguments, data
split, training config), so a second run reuses the checkpoint and a changed config retrains.
Checkpoints hold only tensors and plain metadata and are read with
``torch.load(weights_only=True)``: a checkpoint cannot run code.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autocompress import _files
from autocompress.backend import adamw
from autocompress.config import DataConfig, ModelConfig, TrainConfig, to_plain
from autocompress.data import Splits, batches, endless_batches, load_splits
from autocompress.errors import DataError
from autocompress.measure import cpu_model, top1_accuracy
from autocompress.models._zoo import build_model


@dataclass(frozen=True)
class Reference:
    """A trained reference model and what we know about it."""

    model: nn.Module
    checkpoint: Path
    val_accuracy: float
    test_accuracy: float
    meta: dict[str, Any]


def cache_dir() -> Path:
    """``$AUTOCOMPRESS_CACHE`` or ``~/.cache/autocompress``."""
    return Path(os.environ.get("AUTOCOMPRESS_CACHE", Path.home() / ".cache" / "autocompress"))


# data fields added after checkpoints were cached: keyed only when set, so old slots stay valid
_KEYED_WHEN_SET = ("channels", "image_size")
# training fields added likewise: keyed only when they differ from these defaults
_TRAIN_KEYED_UNLESS = {"optimizer": "sgd", "augment": False}


def checkpoint_path(model: ModelConfig, data: DataConfig, base_dir: str | Path = ".") -> Path:
    """Where the reference checkpoint lives: the explicit path, or its config's cache slot."""
    if model.checkpoint:
        p = Path(model.checkpoint).expanduser()
        return p if p.is_absolute() else Path(base_dir) / p
    key = {
        "name": model.name,
        "kwargs": model.kwargs,
        "train": {
            k: v
            for k, v in to_plain(model.train).items()
            if not (k in _TRAIN_KEYED_UNLESS and v == _TRAIN_KEYED_UNLESS[k])
        },
        "data": {
            k: v
            for k, v in to_plain(data).items()
            if k != "calibration_batches" and not (k in _KEYED_WHEN_SET and v is None)
        },
    }
    if model.builder is not None:  # two builders never share a checkpoint (registry keys kept)
        key["builder"] = model.builder
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "checkpoints" / f"{model.name}-{digest}.pt"


def load_reference(
    model: ModelConfig,
    data: DataConfig,
    *,
    base_dir: str | Path = ".",
    train: bool = True,
    device: str = "cpu",
    where: str = "model",
) -> Reference:
    """Load the cached reference model, training it first if needed (and allowed).

    ``device`` is where a missing checkpoint trains (``cuda`` on a GPU machine); it is recorded in
    the checkpoint's metadata, not in its cache key: the slot names what is trained, not where.
    A distillation teacher (``finetune.teacher``) loads the same way; ``where`` is the section
    its errors name.
    """
    path = checkpoint_path(model, data, base_dir)
    splits = load_splits(data)
    torch.manual_seed(model.train.seed)  # the initial weights are part of the cached config
    net = build_model(
        model.name, splits.input_shape, splits.num_classes, model.kwargs, builder=model.builder
    )
    if not path.exists():
        if model.checkpoint or not train:
            raise DataError(
                f"checkpoint {path} does not exist; train it or fix {where}.checkpoint"
            )
        train_reference(net, splits, model, path, device=device)
    state, meta = read_checkpoint(path)
    try:
        net.load_state_dict(state)
    except RuntimeError:
        raise DataError(
            f"checkpoint {path} does not fit {where} {model.name!r} {model.kwargs}; "
            f"use the matching {where} config or delete the file to retrain"
        ) from None
    net.eval()
    return Reference(
        model=net,
        checkpoint=path,
        val_accuracy=float(meta.get("val_accuracy", float("nan"))),
        test_accuracy=float(meta.get("test_accuracy", float("nan"))),
        meta=meta,
    )


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read ``{"state_dict": ..., "meta": ...}`` (or a bare state dict) without running code."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or truncated files
        raise DataError(
            f"checkpoint {path} is corrupt or not a weights-only checkpoint "
            f"({type(exc).__name__}); delete it to retrain"
        ) from None
    if isinstance(blob, dict) and "state_dict" in blob:
        return blob["state_dict"], dict(blob.get("meta") or {})
    if isinstance(blob, dict) and all(isinstance(v, torch.Tensor) for v in blob.values()):
        return blob, {}
    raise DataError(f"checkpoint {path} holds no state dict; delete it to retrain")


def train_reference(
    net: nn.Module, splits: Splits, model: ModelConfig, path: Path, *, device: str = "cpu"
) -> None:
    """Train ``net`` (SGD or AdamW, one-cycle) and write the checkpoint atomically."""
    cfg = model.train
    if cfg.augment and splits.train_x.dim() != 4:
        raise DataError(
            "model.train.augment shifts and flips images; this data set is not images "
            "(set augment: false)"
        )
    torch.manual_seed(cfg.seed)
    steps = max(1, math.ceil(cfg.epochs * len(splits.train_x) / cfg.batch_size))
    net.to(device)
    opt = _optimizer(net, cfg)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    stream = endless_batches(splits.train_x, splits.train_y, cfg.batch_size, seed=cfg.seed)
    shifts = torch.Generator().manual_seed(cfg.seed + 1)
    per_epoch = max(1, math.ceil(len(splits.train_x) / cfg.batch_size))
    curve: list[dict[str, float]] = []  # validation accuracy after each epoch: convergence shown
    net.train()
    start = time.perf_counter()
    for step in range(steps):
        x, y = next(stream)
        if cfg.augment:
            x = augment_images(x, shifts)
        loss = loss_fn(net(x.to(device)), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            print(
                f"  reference {model.name}: step {step + 1}/{steps} loss {loss.item():.3f}",
                flush=True,
            )
        if (step + 1) % per_epoch == 0 or step == steps - 1:
            point = {"epoch": round((step + 1) / per_epoch, 2), "loss": round(loss.item(), 4)}
            point["val_accuracy"] = accuracy(net, splits.val_x, splits.val_y, device=device)
            curve.append(point)
            print(f"  reference {model.name}: epoch {point['epoch']:g} {point}", flush=True)
            net.train()
    net.eval()
    meta = {
        "model": model.name,
        "kwargs": model.kwargs,
        "train": to_plain(cfg),
        "train_seconds": time.perf_counter() - start,
        "trained_on": _device_name(device),
        "curve": curve,
        "val_accuracy": accuracy(net, splits.val_x, splits.val_y, device=device),
        "test_accuracy": accuracy(net, splits.test_x, splits.test_y, device=device),
        "params": sum(p.numel() for p in net.parameters()),
    }
    net.to("cpu")
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {"state_dict": net.state_dict(), "meta": meta}
    _files.write_with(path, lambda tmp: torch.save(checkpoint, tmp))


def _optimizer(net: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Nesterov SGD for the CNNs; AdamW (decay on matrices only) for transformers."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            net.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay
        )
    return adamw(net.parameters(), cfg.lr, cfg.weight_decay)


def augment_images(x: torch.Tensor, generator: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Each image shifted by up to ``pad`` pixels each way (zeros enter) and flipped with p=1/2.

    Example:
        >>> augment_images(torch.ones(3, 1, 4, 4), torch.Generator().manual_seed(0)).shape
        torch.Size([3, 1, 4, 4])
    """
    n, c, h, w = x.shape
    padded = nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    images, channels = torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None]
    out = padded[images, channels, rows, cols]
    flip = torch.rand(n, generator=generator) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def _device_name(device: str) -> str:
    """The hardware a reference trained on, named as the README names machines (CPU model and
    cores, or the GPU): its training seconds are that machine's."""
    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"{device} ({cpu_model()}, {os.cpu_count()} cores)"


@torch.no_grad()
def accuracy(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512, *, device: str = "cpu"
) -> float:
    """Top-1 accuracy of a torch model in eval mode (on ``device``; logits back on the CPU)."""
    net.eval()
    return top1_accuracy(lambda bx: net(bx.to(device)).cpu(), batches(x, y, batch_size))
