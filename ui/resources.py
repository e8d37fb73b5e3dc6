"""The one UI-side home of heavy cached objects: models, predictors, datasets.

Everything here is `st.cache_resource` (shared by all sessions, read-only):
a cached model is never trained or changed. Models are keyed by their file's
sha256, so a retrained file is loaded afresh. TensorFlow is imported only when
a model is asked for, so pages that don't need one stay light.
"""

from __future__ import annotations

import re

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


@st.cache_resource(show_spinner="Loading the model...", max_entries=8)
def _load_model(path: str, sha256: str):
    # One line per real load (a cache miss): benchmarks/classroom_load.py counts them.
    _LOG.info("Loading model %s (sha256 %s)", path, sha256[:12])
    return artifacts.load_model(path)


def get_model(name: str):
    """(model, sidecar) for a model in `models/`, verified and loaded in safe mode; UserError if not."""
    path = artifacts.resolve_model_path(name)
    return _load_model(str(path), artifacts.sha256_of(path))


@st.cache_resource(max_entries=8)
def _predictor(path: str, sha256: str):
    from cnn.inference import Predictor

    model, _ = _load_model(path, sha256)
    return Predictor(model)


def get_predictor(name: str):
    """A thread-safe fast `cnn.inference.Predictor` for the named model."""
    path = artifacts.resolve_model_path(name)
    return _predictor(str(path), artifacts.sha256_of(path))


@st.cache_resource(show_spinner="Reading CIFAR-10...")
def get_dataset() -> data.Cifar10 | None:
    """The full CIFAR-10 when it is on this machine, else None (pages then use the sample)."""
    try:
        return data.load_cifar10()
    except DataError:
        return None


@st.cache_resource
def get_sample() -> data.Split:
    """The bundled exact test images 0-999."""
    return data.load_sample()


def test_images() -> tuple[data.Split, str]:
    """The full test set when present, else the bundled sample, with a sentence saying which."""
    dataset = get_dataset()
    if dataset is None:
        return get_sample(), "the bundled sample (exact CIFAR-10 test images 0-999)"
    return dataset.test, ("the whole CIFAR-10 test set (10,000 images; in the shared copy, "
                          "images 1000-9999 are JPEG-derived)")


def model_picker(label: str = "Model", key: str = "model_choice") -> str | None:
    """A selectbox of the usable saved models, the best (by validation accuracy) first; None when there are none.

    Models that cannot be used are named below it with the reason, never offered.
    """
    entries = saved_models()
    usable = [entry for entry in entries if entry.usable]
    unusable = [entry for entry in entries if not entry.usable]
    if not usable:
        st.warning("No saved model can be used: see why below, or train one on the Train page." if unusable else
                   "No saved model yet: train one on the Train page, or run `make run` from a full checkout.")
        choice = None
    else:
        labels = {entry.name: _model_label(entry) for entry in usable}
        choice = st.selectbox(label, list(labels), format_func=labels.get, key=key)
    if unusable:
        st.caption("Cannot be used: " + "; ".join(plain_markdown(entry.describe()) for entry in unusable) + ".")
    return choice


def _model_label(entry: artifacts.SavedModel) -> str:
    accuracy = entry.val_accuracy
    return f"{entry.name} (validation {accuracy:.1%})" if accuracy is not None else entry.name


def plain_markdown(text: str) -> str:
    """`text` with Markdown's (and Streamlit's directive) characters escaped, so it shows as written."""
    return re.sub(r"([\\`*_\[\]<>#|~:$])", r"\\\1", text)


def show_user_error(error: UserError) -> None:
    """The one way a page reports a user's mistake: a plain message, no traceback."""
    st.error(str(error), icon=":material/error:")
