"""A user's own images: an image-folder tree or ``.npy`` arrays (``data.dataset: folder | npy``).

Both readers return raw arrays, images (N, C, H, W) and integer labels, for the train and test
splits; ``_datasets._split`` carves the validation split and normalises, as for every data set.

- ``folder``: ``root/<class>/*.png|jpg`` (classes in sorted order, the label is the index), or
  ``root/train/<class>/...`` and ``root/test/<class>/...`` when both exist. A single tree gives
  its test split by a fixed, seeded draw (``data.test_size`` images, default a fifth), so the test
  split never depends on ``data.seed``. Images are converted to grayscale (``data.channels: 1``)
  or RGB (3; by default 3 when any image has colour) and resized only when ``data.image_size`` is
  given: otherwise all images must share one size. Read with Pillow.
- ``npy``: ``root/x_train.npy, y_train.npy, x_test.npy, y_test.npy``; images (N, C, H, W) or
  (N, H, W), uint8 (scaled to [0, 1]) or float (taken as they are); loaded without pickles.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autocompress.config import DataConfig
from autocompress.errors import DataError

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # train x, y, test x, y
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
_TEST_SEED = 1234  # the carved test split is fixed, like digits'
NPY_FILES = ("x_train", "y_train", "x_test", "y_test")


def read_folder(config: DataConfig) -> tuple[Arrays, int]:
    """Images and labels of an image-folder tree, and the number of classes."""
    root = _directory(config)
    split = (root / "train").is_dir() and (root / "test").is_dir()
    trees = [root / "train", root / "test"] if split else [root]
    classes = _classes(trees[0])
    files = [_files(tree, classes) for tree in trees]
    channels = config.channels or _channels([f for tree in files for f, _ in tree])
    arrays = [_read_images(tree, channels, config.image_size) for tree in files]
    if split:
        (train_x, train_y), (test_x, test_y) = arrays
        return (train_x, train_y, test_x, test_y), len(classes)
    x, y = arrays[0]
    n_test = config.test_size or max(1, len(x) // 5)
    if n_test >= len(x):
        raise DataError(f"{root}: {len(x)} images leave none for training after the test split")
    order = np.random.default_rng(_TEST_SEED).permutation(len(x))
    test, train = order[:n_test], order[n_test:]
    return (x[train], y[train], x[test], y[test]), len(classes)


def read_npy(config: DataConfig) -> tuple[Arrays, int]:
    """The four ``.npy`` arrays, checked for shape and type, and the number of classes."""
    root = _directory(config)
    missing = [f"{n}.npy" for n in NPY_FILES if not (root / f"{n}.npy").is_file()]
    if missing:
        raise DataError(f"data.root={str(root)!r} lacks {', '.join(missing)}")
    loaded = {n: _load_npy(root / f"{n}.npy") for n in NPY_FILES}
    xs = [_images(loaded[f"x_{s}"], root / f"x_{s}.npy") for s in ("train", "test")]
    ys = [
        _labels(loaded[f"y_{s}"], root / f"y_{s}.npy", len(x))
        for s, x in zip(("train", "test"), xs, strict=True)
    ]
    if xs[0].shape[1:] != xs[1].shape[1:]:
        raise DataError(
            f"{root}: x_train images are {list(xs[0].shape[1:])}, x_test {list(xs[1].shape[1:])}"
        )
    num_classes = int(max(ys[0].max(initial=0), ys[1].max(initial=0))) + 1
    return (xs[0], ys[0], xs[1], ys[1]), num_classes


def _directory(config: DataConfig) -> Path:
    root = Path(config.root or "")
    if not config.root or not root.is_dir():
        raise DataError(f"data.root={config.root!r} is not a directory; point it at your data")
    return root


def _classes(tree: Path) -> list[str]:
    classes = sorted(p.name for p in tree.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{tree}: no class directories; expected {tree}/<class>/*.png")
    return classes


def _files(tree: Path, classes: list[str]) -> list[tuple[Path, int]]:
    out = []
    for label, name in enumerate(classes):
        images = sorted(p for p in (tree / name).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise DataError(f"{tree / name}: no images ({', '.join(IMAGE_SUFFIXES)})")
        out += [(p, label) for p in images]
    return out


def _channels(files: list[Path]) -> int:
    from PIL import Image

    for path in files:
        with Image.open(path) as image:
            if image.mode not in _GRAY_MODES:
                return 3
    return 1


def _read_images(
    files: list[tuple[Path, int]], channels: int, size: list[int] | None
) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    images: list[np.ndarray] = []
    for path, _ in files:
        try:
            with Image.open(path) as opened:
                image = opened.convert("L" if channels == 1 else "RGB")
                if size is not None:
                    image = image.resize((size[1], size[0]))
                pixels = np.asarray(image, dtype=np.uint8)
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(f"{path}: not a readable image ({exc})") from None
        if images and pixels.shape != images[0].shape:
            raise DataError(
                f"{path}: {pixels.shape[1]}x{pixels.shape[0]} pixels, but {files[0][0]} is "
                f"{images[0].shape[1]}x{images[0].shape[0]}; set data.image_size: [H, W]"
            )
        images.append(pixels)
    x = np.stack(images)
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)  # (N, C, H, W)
    return np.ascontiguousarray(x), np.array([label for _, label in files], dtype=np.int64)


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc})") from None


def _images(x: np.ndarray, path: Path) -> np.ndarray:
    if x.ndim not in (3, 4):
        raise DataError(f"{path}: images must be (N, C, H, W) or (N, H, W), got {list(x.shape)}")
    if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"{path}: images must be uint8 or float, got {x.dtype}")
    x = x[:, None] if x.ndim == 3 else x
    return np.ascontiguousarray(x if x.dtype == np.uint8 else x.astype(np.float32))


def _labels(y: np.ndarray, path: Path, n: int) -> np.ndarray:
    if y.ndim != 1 or len(y) != n or not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"{path}: labels must be {n} integers (one per image), got {y.dtype} {list(y.shape)}"
        )
    if len(y) and y.min() < 0:
        raise DataError(f"{path}: labels must be 0, 1, ..., got {int(y.min())}")
    return y.astype(np.int64)
