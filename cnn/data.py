"""CIFAR-10 loading (python-version pickles), the bundled sample, and splits.

Where the data is looked for, in order: an explicit folder or archive, the
`CIFAR10_DIR` environment variable, Keras's cache
(`~/.keras/datasets/cifar-10-batches-py`), then (only when asked) the official
download through Keras's downloader, which shows a progress bar.

No TensorFlow at import time: the Learn and Data pages use this module.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from cnn import CLASS_NAMES, IMAGE_SIZE, NUM_CLASSES
from cnn.errors import DataError

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META_FILE = "batches.meta"
IMAGES_PER_BATCH = 10_000  # in the official files; smaller batches are accepted (test fixtures)
VALIDATION_SIZE = 5_000  # the last 5,000 training images: hyperparameters are chosen here
CLEAN_TEST_STOP = 1_000  # test images 0..999 of the shared copy are exact (its PROVENANCE.md)
OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
OFFICIAL_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"  # Keras's cifar10.load_data
DOWNLOAD_TIMEOUT_S = 60  # seconds without data before the download gives up
DOWNLOAD_CHUNK_BYTES = 1 << 20  # progress is reported after each MiB
SAMPLE_PATH = Path(__file__).with_name("sample") / "cifar10_test_0_999.npz"
KERAS_CACHE = Path.home() / ".keras" / "datasets" / "cifar-10-batches-py"


@dataclass(frozen=True)
class Split:
    """Images (N, 32, 32, 3) uint8 and integer labels (N,) of one part of CIFAR-10."""

    images: np.ndarray
    labels: np.ndarray
    name: str = ""

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, start: int | None = None, stop: int | None = None) -> "Split":
        """Images `start:stop`, named after the range (e.g. `test[0:1000]`)."""
        begin, end, _ = slice(start, stop).indices(len(self))
        if begin >= end:
            raise DataError(f"The range {start}:{stop} selects no image of {self.name} ({len(self)} images).")
        return Split(self.images[begin:end], self.labels[begin:end], f"{self.name}[{begin}:{end}]")


@dataclass(frozen=True)
class Cifar10:
    """The three parts we use: train (minus validation), validation, test."""

    train: Split
    val: Split
    test: Split
    source: str
    class_names: tuple[str, ...] = CLASS_NAMES

    @property
    def identity(self) -> str:
        """What the data is, by content rather than by where it lies: the image counts and a sha256 of
        every image and label (the same copy gives the same text on any machine; sidecars record this)."""
        digest = hashlib.sha256()  # images, then labels: the same whatever the validation cut
        for part in (self.train, self.val, self.test):
            digest.update(np.ascontiguousarray(part.images).tobytes())
        for part in (self.train, self.val, self.test):
            digest.update(np.asarray(part.labels, np.int64).tobytes())
        what = "bundled sample of CIFAR-10" if self.source == SAMPLE_SOURCE else "CIFAR-10 (python version)"
        return (
            f"{what}: {len(self.train) + len(self.val):,} training and {len(self.test):,} "
            f"test images, content sha256 {digest.hexdigest()[:16]}"
        )

    def split(self, name: str) -> Split:
        """`train`, `val` or `test` by name, with a clear error otherwise."""
        if name not in ("train", "val", "test"):
            raise DataError(f"Unknown split {name!r}: choose train, val or test.")
        return getattr(self, name)


def find_data_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """Return the first CIFAR-10 location that exists, or None.

    An explicit `data_dir` that does not exist is an error, not a fallback:
    the user asked for that folder.
    """
    if data_dir:
        path = Path(data_dir).expanduser()
        if not path.exists():
            raise DataError(f"No CIFAR-10 data at {path}: the folder or archive does not exist.")
        return path
    for candidate in (os.environ.get("CIFAR10_DIR"), KERAS_CACHE):
        if candidate and Path(candidate).expanduser().is_dir():
            return Path(candidate).expanduser()
    return None


def download_cifar10(progress: Callable[[int, int], None] | None = None) -> Path:
    """Download the official archive and return its `cifar-10-batches-py` folder.

    Args:
        progress: None uses Keras's downloader (a progress bar on the terminal).
            A callable `progress(bytes_done, bytes_total)` instead streams the
            archive here (total is 0 when the server does not say), checks its
            sha256, and unpacks it into Keras's cache, where `find_data_dir` looks.
    """
    if progress is not None:
        return _download_with_progress(progress)
    from keras.utils import get_file  # heavy: only when a download is asked for

    archive = get_file("cifar-10-batches-py", origin=OFFICIAL_URL, untar=True)
    path = Path(archive)
    return path if (path / META_FILE).exists() else path / "cifar-10-batches-py"


def _download_with_progress(
    progress: Callable[[int, int], None], url: str = OFFICIAL_URL, sha256: str = OFFICIAL_SHA256
) -> Path:
    """Stream `url` to a temporary file, verify it, unpack it, then move it into place atomically."""
    target = KERAS_CACHE
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".cifar10-download-") as work:
        archive = Path(work) / "cifar-10-python.tar.gz"
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, archive.open("wb") as out:
                total = int(response.headers.get("Content-Length") or 0)
                done = 0
                progress(done, total)
                while chunk := response.read(DOWNLOAD_CHUNK_BYTES):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    progress(done, total)
        except (OSError, ValueError) as error:  # URLError, timeouts and HTTP errors are OSErrors
            raise DataError(f"The CIFAR-10 download from {url} failed: {error}.") from None
        if digest.hexdigest() != sha256:
            raise DataError(f"The file downloaded from {url} is not the official CIFAR-10 archive (sha256 differs).")
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(work, filter="data")  # "data": no links out, no absolute paths
        except (tarfile.TarError, OSError) as error:
            raise DataError(f"The downloaded CIFAR-10 archive could not be unpacked ({error}).") from None
        unpacked = Path(work) / "cifar-10-batches-py"
        if not (unpacked / META_FILE).is_file():
            raise DataError("The downloaded archive has no cifar-10-batches-py folder.")
        if not (target / META_FILE).is_file():
            unpacked.replace(target)
    return target


def load_cifar10(
    data_dir: str | os.PathLike | None = None,
    *,
    val_size: int = VALIDATION_SIZE,
    download: bool = False,
) -> Cifar10:
    """Load CIFAR-10 and split the last `val_size` training images off as validation.

    Args:
        data_dir: a `cifar-10-batches-py` folder or a `cifar-10-python.tar.gz`;
            None searches `CIFAR10_DIR` and Keras's cache.
        val_size: how many of the last training images form the validation split.
        download: fetch the official archive when nothing is found.

    Returns:
        A `Cifar10` with uint8 images and int64 labels.
    """
    location = find_data_dir(data_dir)
    if location is None:
        if not download:
            raise DataError(
                "CIFAR-10 was not found: pass --data-dir, set CIFAR10_DIR, or allow the download (about 170 MB)."
            )
        location = download_cifar10()
    reader = _open_reader(location)
    batches = {name: reader.read_batch(name) for name in (*TRAIN_BATCHES, TEST_BATCH)}
    _check_class_names(reader.read_meta(), location)
    train_images = np.concatenate([batches[name][0] for name in TRAIN_BATCHES])
    train_labels = np.concatenate([batches[name][1] for name in TRAIN_BATCHES])
    if not 0 <= val_size < len(train_labels):
        raise DataError(f"The validation size must be between 0 and {len(train_labels) - 1}, not {val_size}.")
    cut = len(train_labels) - val_size
    return Cifar10(
        train=Split(train_images[:cut], train_labels[:cut], "train"),
        val=Split(train_images[cut:], train_labels[cut:], "val"),
        test=Split(*batches[TEST_BATCH], "test"),
        source=str(location),
    )


def load_test_split(data_dir: str | os.PathLike | None = None) -> Split:
    """The full test split alone: one batch file instead of six (the Evaluate page's gallery needs no more).

    Raises DataError when CIFAR-10 is not found (no download here).
    """
    location = find_data_dir(data_dir)
    if location is None:
        raise DataError("CIFAR-10 was not found: pass --data-dir or set CIFAR10_DIR.")
    reader = _open_reader(location)
    _check_class_names(reader.read_meta(), location)
    return Split(*reader.read_batch(TEST_BATCH), "test")


def _open_reader(location: Path) -> "_FolderReader":
    return _ArchiveReader(location) if location.is_file() else _FolderReader(location)


def load_sample() -> Split:
    """The bundled exact test images 0-999 with labels: works with no dataset at all.

    The file holds `images` (uint8) and `labels` of `test_batch[0:1000]`, saved with
    `np.savez_compressed`; tests/test_data.py checks it against the real test set.
    """
    with np.load(SAMPLE_PATH) as arrays:
        return Split(arrays["images"], arrays["labels"].astype(np.int64), "test")


SAMPLE_SIZE = 1_000  # images in the bundled sample (test 0-999)
SAMPLE_VAL_SIZE = 200  # validation images of a run on the sample: its last 200
SAMPLE_SOURCE = "bundled sample: CIFAR-10 test images 0-999 (for trying training, not for real accuracy)"


def load_sample_for_training(val_size: int = SAMPLE_VAL_SIZE) -> Cifar10:
    """The bundled 1,000-image sample as a tiny training set, for classrooms without the full CIFAR-10.

    The last `val_size` images validate; the rest train. There is no separate test part: `test` is the
    validation part again (a model trained here has seen every other sample image).
    """
    sample = load_sample()
    if not 0 < val_size < len(sample):
        raise DataError(
            f"On the bundled sample the validation size must be between 1 and {len(sample) - 1}, not {val_size}."
        )
    cut = len(sample) - val_size
    train, val = sample.subset(0, cut), sample.subset(cut, None)
    return Cifar10(train=train, val=val, test=val, source=SAMPLE_SOURCE)


def load_split_or_sample(data_dir: str | os.PathLike | None, split: str) -> tuple[Split, str]:
    """The requested split of the full data when found, else the bundled sample.

    Returns the split and a plain sentence saying which data it is.
    """
    try:
        # The test split needs no validation cut (and small folders have no room for one).
        data = load_cifar10(data_dir, val_size=0 if split == "test" else VALIDATION_SIZE)
    except DataError:
        if data_dir or split != "test":
            raise
        return load_sample(), "bundled sample: the exact CIFAR-10 test images 0-999"
    return data.split(split), f"CIFAR-10 {split} split from {data.source}"


def describe_test_part(split: Split) -> str:
    """Name a test range honestly: images 1000-9999 of the shared copy are JPEG-derived."""
    name = split.name
    if name.startswith("test[0:") and _range_stop(name) <= CLEAN_TEST_STOP:
        return f"{name} (exact images)"
    if name.startswith("test"):
        return f"{name} (includes JPEG-derived images 1000-9999 where the data is the shared copy)"
    return name


def jpeg_copy(split: Split, quality: int = 75) -> Split:
    """The split re-encoded as JPEG (4:2:0), like the shared copy's test images 1000-9999.

    Lets us estimate a model's cost of JPEG artefacts on validation images,
    without touching the test set.
    """
    from PIL import Image

    def round_trip(image: np.ndarray) -> np.ndarray:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=quality, subsampling="4:2:0")
        return np.asarray(Image.open(buffer).convert("RGB"))

    images = np.stack([round_trip(image) for image in split.images])
    return Split(images, split.labels, f"{split.name} (JPEG q{quality})")


def one_hot(labels: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Integer labels -> float32 one-hot rows, as the report's `to_categorical`."""
    return np.eye(num_classes, dtype=np.float32)[np.asarray(labels, dtype=np.int64)]


def _range_stop(name: str) -> int:
    try:
        return int(name.split(":")[1].rstrip("]"))
    except (IndexError, ValueError):
        return 10**9


def _check_class_names(meta: dict, location: Path) -> None:
    names = tuple(_text(name) for name in meta.get(b"label_names", meta.get("label_names", [])))
    if names != CLASS_NAMES:
        raise DataError(f"{location / META_FILE}: unexpected class names {names!r}.")


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _unpickle(raw: bytes, label: str) -> dict:
    """Read one CIFAR pickle. The files are data we ship or the official ones;
    even so we only accept the expected dict layout."""
    try:
        content = pickle.loads(raw, encoding="bytes")
    except Exception as error:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise DataError(f"{label} is corrupt or not a CIFAR-10 python batch ({type(error).__name__}).") from None
    if not isinstance(content, dict):
        raise DataError(f"{label} is not a CIFAR-10 python batch (no dictionary inside).")
    return content


def _decode_batch(content: dict, label: str) -> tuple[np.ndarray, np.ndarray]:
    data = content.get(b"data", content.get("data"))
    labels = content.get(b"labels", content.get("labels"))
    if data is None or labels is None:
        raise DataError(f"{label} has no 'data' or 'labels' entry.")
    data = np.asarray(data)
    labels = np.asarray(labels, dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{label}: expected uint8 rows of 3072 values, found {data.dtype} {data.shape}.")
    if data.shape[0] == 0 or labels.shape != (data.shape[0],):
        raise DataError(f"{label}: {data.shape[0]} images but {labels.shape[0]} labels.")
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise DataError(f"{label}: labels must be 0-9, found {labels.min()}..{labels.max()}.")
    # Rows are 1024 red, 1024 green, 1024 blue values: to (N, 32, 32, 3).
    images = data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


class _FolderReader:
    def __init__(self, folder: Path):
        self.folder = folder

    def _raw(self, name: str) -> bytes:
        path = self.folder / name
        if not path.is_file():
            needed = ", ".join((*TRAIN_BATCHES, TEST_BATCH, META_FILE))
            raise DataError(f"{path} is missing: a CIFAR-10 folder needs {needed}.")
        return path.read_bytes()

    def read_batch(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return _decode_batch(_unpickle(self._raw(name), str(self.folder / name)), str(self.folder / name))

    def read_meta(self) -> dict:
        return _unpickle(self._raw(META_FILE), str(self.folder / META_FILE))


class _ArchiveReader(_FolderReader):
    """A `cifar-10-python.tar.gz`: members are read in memory, never extracted."""

    def __init__(self, archive: Path):
        super().__init__(archive)
        try:
            with tarfile.open(archive, "r:*") as tar:
                self.members = {
                    Path(member.name).name: tar.extractfile(member).read()
                    for member in tar.getmembers()
                    if member.isfile() and Path(member.name).name in (*TRAIN_BATCHES, TEST_BATCH, META_FILE)
                }
        except (tarfile.TarError, OSError, EOFError) as error:
            raise DataError(f"{archive} is not a readable CIFAR-10 archive ({error}).") from None

    def _raw(self, name: str) -> bytes:
        if name not in self.members:
            raise DataError(f"{self.folder} has no member {name}.")
        return self.members[name]
