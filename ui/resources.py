"""The one UI-side home of heavy cached objects: models, predictors, datasets.

Everything here is `st.cache_resource` (shared by all sessions, read-only):
a cached model is never trained or changed. TensorFlow is imported only when
a model is asked for, so pages that don't need one stay light.

A model file is resolved and hashed once: the caches are keyed by its
`ModelFile` (resolved path, inode, size, modification time), which costs one
`stat` per rerun, and the sha256 against the sidecar is checked inside the
cached loader, once per load. Saving a model replaces the file (a new inode
and time), so a retrained model is loaded and verified afresh. The trade-off:
a file altered in place with its size and time put back is not noticed while
its verified model stays cached; the cache keeps serving the model that was
verified, never unverified bytes, and the next load refuses the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from streamlit.logger import get_logger

from cnn import artifacts, data
from cnn.errors import DataError, UserError

_LOG = get_logger(__name__)


def saved_models() -> list[artifacts.SavedModel]:
    """Every saved model, usable ones best first, then those that cannot be used and why; cheap, never cached."""
    return artifacts.scan_models()


def shipped_models() -> list[dict]:
    """Sidecars (as dicts, with `name` and `path`) of every usable saved model, best validation accuracy first."""
    return [entry.record() for entry in saved_models() if entry.usable]


@dataclass(frozen=True)
class ModelFile:
    """A model file as the caches know it: a different file or a rewrite gives a different key."""

    path: str  # resolved, inside the models folder
    inode: int
    size: int  # bytes
    mtime_ns: int


def model_path(name: str) -> Path:
    """The file of the saved model called `name`, as the models folder lists it ("fast"), never a path.

    Pages name models; a path typed by a user goes through the CLI (`artifacts.resolve_model_path`).
    ModelFileError when `name` is not a model name or no such model is saved.
    """
    return artifacts.resolve_model_path(artifacts.check_model_name(name))


def _identity(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def model_file(name: str) -> ModelFile:
    """The named model's file (`model_path`) and its identity, without reading it."""
    path = model_path(name)
    return ModelFile(str(path), *_identity(path))


def file_version(path: Path) -> tuple[int, int, int] | None:
    """(inode, size, mtime_ns) of a file beside a model (its sidecar, its stored predictions); None when there
    is none. Rewriting or replacing the file changes it, so a cache keyed by it reads the new file."""
    try:
        return _identity(Path(path))
    except FileNotFoundError:
        return None


@st.cache_resource(show_spinner="Loading the model...", max_entries=8)
def _load_model(file: ModelFile):
    # One line per real load (a cache miss): benchmarks/classroom_load.py counts them.
    _LOG.info("Loading model %s (sha256 checked against its sidecar)", file.path)
    return artifacts.load_model(file.path)  # verifies the sha256, then loads in safe mode


def get_model(name: str):
    """(model, sidecar) of the saved model called `name` (not a path), verified and loaded in safe mode;
    UserError if not."""
    return _load_model(model_file(name))


@st.cache_resource(max_entries=8)
def _predictor(file: ModelFile):
    from cnn.inference import Predictor

    model, _ = _load_model(file)
    return Predictor(model)  # holds the model's one lock, shared with cnn.explain


def get_predictor(name: str):
    """A thread-safe fast `cnn.inference.Predictor` for the named model."""
    return _predictor(model_file(name))


@st.cache_resource(show_spinner="Reading CIFAR-10...")
def get_dataset() -> data.Cifar10 | None:
    """The full CIFAR-10 when it is on this machine, else None (pages then use the sample)."""
    return _when_found(data.load_cifar10)


@st.cache_resource
def get_sample() -> data.Split:
    """The bundled exact test images 0-999."""
    return data.load_sample()


@st.cache_resource(show_spinner="Reading the CIFAR-10 test images...")
def full_test_split() -> data.Split | None:
    """The full test split when CIFAR-10 is on this machine, else None: one batch file, read fast."""
    return _when_found(data.load_test_split)


def _when_found(load):
    """`load()` of the full CIFAR-10, or None when it cannot be read here (a DataError)."""
    try:
        return load()
    except DataError:
        return None


def test_images() -> tuple[data.Split, str]:
    """The full test set when present, else the bundled sample, with a sentence saying which."""
    test = full_test_split()
    if test is None:
        return get_sample(), "the bundled sample (exact CIFAR-10 test images 0-999)"
    return test, ("the whole CIFAR-10 test set (10,000 images; in the shared copy, images 1000-9999 are JPEG-derived)")


def model_picker(label: str = "Model", key: str = "model_choice", default=None) -> str | None:
    """A selectbox of the usable saved models, the best (by validation accuracy) first; None when there are none.

    `default(records) -> name or None` may choose the preselected model (else the best); models that
    cannot be used are named below it with the reason, never offered.
    """
    entries = saved_models()
    usable = [entry for entry in entries if entry.usable]
    unusable = [entry for entry in entries if not entry.usable]
    if not usable:
        st.warning(
            "No saved model can be used: see why below, or train one on the Train page."
            if unusable
            else "No saved model yet: train one on the Train page, or run `make run` from a full checkout."
        )
        choice = None
    else:
        labels = {entry.name: _model_label(entry) for entry in usable}
        names = list(labels)
        preselected = default([entry.record() for entry in usable]) if default is not None else None
        index = names.index(preselected) if preselected in names else 0
        choice = st.selectbox(label, names, index=index, format_func=labels.get, key=key)
    if unusable:
        st.caption("Cannot be used: " + "; ".join(plain_markdown(entry.describe()) for entry in unusable) + ".")
    return choice


def _model_label(entry: artifacts.SavedModel) -> str:
    """`fast (validation 94.3%, 6.6 ms per image)`: the figures the sidecar records."""
    metrics = entry.sidecar.metrics
    figures = [f"validation {metrics.val_accuracy:.1%}"] if metrics.val_accuracy is not None else []
    if metrics.latency_p50_ms is not None:
        figures.append(f"{metrics.latency_p50_ms:.1f} ms per image")
    return f"{entry.name} ({', '.join(figures)})" if figures else entry.name


def plain_markdown(text: str) -> str:
    """`text` with Markdown's (and Streamlit's directive) characters escaped, so it shows as written."""
    return re.sub(r"([\\`*_\[\]<>#|~:$])", r"\\\1", text)


def show_user_error(error: UserError) -> None:
    """The one way a page reports a user's mistake: a plain message, no traceback."""
    st.error(str(error), icon=":material/error:")
