"""Data sets with a fixed train / validation / test split, held in memory as tensors.

The search scores candidates on the validation split (carved from the training set by a seeded
permutation); the test split is never seen during a search and is kept for ``verify``. Images are
normalised once, here, so the deployable's input is the normalised tensor (mean and std travel in
the export manifest).

Fashion-MNIST is read from its raw idx files, looked up in this order: ``data.root`` (the four
files, or torchvision's ``<root>/FashionMNIST/raw``), ``$AUTOCOMPRESS_DATA``, the Debian package
``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``), then torchvision's download
where a network exists. ``digits`` (scikit-learn's 8x8 digits) is for tiny tests. A user's own
images, ``folder`` and ``npy``, are read by ``_folder``.

Normalisation is per channel, with the mean and std of the training split; uint8 images are
scaled to [0, 1] first, float images are taken as they are.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from autocompress.config import DataConfig, to_plain
from autocompress.data._folder import read_folder, read_npy
from autocompress.errors import DataError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class Splits:
    """Normalised float images (N, C, H, W) and int64 labels for each split.

    ``channel_mean`` / ``channel_std`` are what the images were normalised with, one per
    channel; ``mean`` / ``std`` are the same numbers for one channel, and the statistics over
    all channels' pixels otherwise (a summary: normalise with the per-channel values).
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: float
    std: float
    num_classes: int
    channel_mean: tuple[float, ...] = ()
    channel_std: tuple[float, ...] = ()

    @property
    def input_shape(self) -> list[int]:
        return list(self.train_x.shape[1:])


def load_splits(config: DataConfig) -> Splits:
    """The split for ``config``; cached per process (workers load it once, not per trial)."""
    return _load_cached(json.dumps(to_plain(config), sort_keys=True))


@functools.lru_cache(maxsize=4)
def _load_cached(key: str) -> Splits:
    config = DataConfig(**json.loads(key))
    if config.dataset == "fashion_mnist":
        train_x, train_y, test_x, test_y = _read_fashion_mnist(config.root)
        return _split(config, train_x, train_y, test_x, test_y, num_classes=10)
    if config.dataset == "folder":
        arrays, num_classes = read_folder(config)
        return _split(config, *arrays, num_classes=num_classes)
    if config.dataset == "npy":
        arrays, num_classes = read_npy(config)
        return _split(config, *arrays, num_classes=num_classes)
    return _split(config, *_read_digits(), num_classes=10)


def batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool = False, seed: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One pass over (x, y) in batches; slicing in-memory tensors keeps loading negligible."""
    n = len(x)
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            yield x[idx], y[idx]
    else:
        for i in range(0, n, batch_size):
            yield x[i : i + batch_size], y[i : i + batch_size]


def endless_batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, *, seed: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled full batches forever (a new permutation each epoch), for step-budgeted loops."""
    return ((bx, by) for bx, by in endless_rows((x, y), batch_size, seed=seed))


def endless_rows(
    tensors: Sequence[torch.Tensor], batch_size: int, *, seed: int = 0
) -> Iterator[tuple[torch.Tensor, ...]]:
    """:func:`endless_batches` over any tensors that share their first dimension (images,
    labels and a teacher's logits for those images), the same rows of each, in the order
    ``endless_batches`` gives for the same seed."""
    n = len(tensors[0])
    epoch = 0
    while True:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100003 + epoch))
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            if len(idx) == batch_size or n < batch_size:
                yield tuple(t[idx] for t in tensors)
        epoch += 1


def _split(
    config: DataConfig,
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    num_classes: int,
) -> Splits:
    n = len(train_x)
    if config.val_size >= n:
        raise DataError(
            f"data.val_size={config.val_size} leaves no training images ({n} in the training "
            f"set); lower it"
        )
    order = np.random.default_rng(config.seed).permutation(n)
    val_idx, train_idx = order[: config.val_size], order[config.val_size :]
    if config.train_size is not None:
        train_idx = train_idx[: config.train_size]
    if config.test_size is not None:
        test_x, test_y = test_x[: config.test_size], test_y[: config.test_size]
    scale = 255.0 if train_x.dtype == np.uint8 else 1.0
    train_x, test_x = (x[:, None] if x.ndim == 3 else x for x in (train_x, test_x))  # NCHW
    picked = train_x[train_idx]
    # channel by channel, each a (N, H, W) array, so one-channel sets keep their exact numbers
    mean = tuple(float(picked[:, c].mean()) / scale for c in range(picked.shape[1]))
    std = tuple(float(picked[:, c].std()) / scale or 1.0 for c in range(picked.shape[1]))

    def prep(images: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(images.astype(np.float32) / scale)
        pairs = enumerate(zip(mean, std, strict=True))
        return torch.stack([(t[:, c] - m) / s for c, (m, s) in pairs], 1)

    def labels(values: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(values.astype(np.int64))

    return Splits(
        train_x=prep(train_x[train_idx]),
        train_y=labels(train_y[train_idx]),
        val_x=prep(train_x[val_idx]),
        val_y=labels(train_y[val_idx]),
        test_x=prep(test_x),
        test_y=labels(test_y),
        mean=mean[0] if len(mean) == 1 else float(picked.mean()) / scale,
        std=std[0] if len(std) == 1 else float(picked.std()) / scale,
        num_classes=num_classes,
        channel_mean=mean,
        channel_std=std,
    )


def _read_fashion_mnist(root: str | None) -> tuple[np.ndarray, ...]:
    directory = _find_fashion_mnist(root)
    arrays = {}
    for key, stem in _FILES.items():
        path = _idx_file(directory, stem)
        arrays[key] = _read_idx(path)
    if len(arrays["train_x"]) != len(arrays["train_y"]) or len(arrays["test_x"]) != len(
        arrays["test_y"]
    ):
        raise DataError(f"{directory}: image and label files disagree in length; re-download them")
    return arrays["train_x"], arrays["train_y"], arrays["test_x"], arrays["test_y"]


def _find_fashion_mnist(root: str | None) -> Path:
    candidates = []
    if root:
        candidates += [Path(root), Path(root) / "FashionMNIST" / "raw"]
        if not Path(root).is_dir():
            raise DataError(f"data.root={root!r} is not a directory; point it at the idx files")
    if os.environ.get("AUTOCOMPRESS_DATA"):
        env = Path(os.environ["AUTOCOMPRESS_DATA"])
        candidates += [env, env / "FashionMNIST" / "raw"]
    if not root:
        candidates.append(DEBIAN_FASHION_MNIST)
    for c in candidates:
        if all(_find_idx(c, stem) for stem in _FILES.values()):
            return c
    if root:
        raise DataError(
            f"data.root={root!r} does not hold the four Fashion-MNIST idx files "
            f"({', '.join(_FILES.values())}, optionally .gz)"
        )
    return _download_fashion_mnist()


def _download_fashion_mnist() -> Path:
    target = Path(os.environ.get("AUTOCOMPRESS_CACHE", Path.home() / ".cache" / "autocompress"))
    target = target / "data"
    try:
        from torchvision.datasets import FashionMNIST

        FashionMNIST(str(target), train=True, download=True)
        FashionMNIST(str(target), train=False, download=True)
    except Exception:  # no network, or a broken mirror: explain what to do instead
        raise DataError(
            "Fashion-MNIST not found and could not be downloaded; install it with "
            "`apt-get install dataset-fashion-mnist` or set data.root to a directory holding "
            "the idx files"
        ) from None
    return target / "FashionMNIST" / "raw"


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _idx_file(directory: Path, stem: str) -> Path:
    path = _find_idx(directory, stem)
    if path is None:
        raise DataError(f"{directory}: {stem}[.gz] is missing")
    return path


def _read_idx(path: Path) -> np.ndarray:
    """Parse an idx file (magic, dims, payload) and refuse anything truncated or foreign."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path) as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: unreadable or corrupt ({exc}); re-install the data") from None
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte idx file; re-install the data")
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    payload = raw[4 + 4 * ndim :]
    if len(payload) != int(np.prod(dims)):
        raise DataError(f"{path}: truncated ({len(payload)} of {np.prod(dims)} bytes)")
    return np.frombuffer(payload, dtype=np.uint8).reshape(dims)


def _read_digits() -> tuple[np.ndarray, ...]:
    pixels, target = _digits_arrays()
    images = (pixels * (255.0 / 16.0)).round().astype(np.uint8)
    labels = target.astype(np.uint8)
    # a fixed 1497 / 300 train / test split (the test split stays unseen by searches)
    order = np.random.default_rng(1234).permutation(len(images))
    test, train = order[:300], order[300:]
    return images[train], labels[train], images[test], labels[test]


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits (values 0-16) and labels, read from the CSV it ships: importing
    sklearn costs 3.5 s on a 2-core EPYC, paid by every CLI process and worker that loads this
    set (``load_digits`` reads the same file); ``load_digits`` if the file has moved."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("data.dataset: digits needs scikit-learn; pip install scikit-learn")
    shipped = Path(next(iter(spec.submodule_search_locations))) / "datasets/data/digits.csv.gz"
    if shipped.is_file():
        table = np.loadtxt(shipped, delimiter=",")
        return table[:, :-1].reshape(-1, 8, 8), table[:, -1]
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target
