"""The one UI-side home of heavy cached objects: models, predictors, datasets.

Everything here is `st.cache_resource` (shared by all sessions, read-only):
a cached model is never trained or changed. Models are keyed by their file's
sha256, so a retrained file is loaded afresh. TensorFlow is imported only when
a model is asked for, so pages that don't need one stay light.
"""

from __future__ import annotations

import streamlit as st

from cnn import artifacts, data
from cnn.errors import DataError, UserError


def shipped_models() -> list[dict]:
    """Sidecars of every saved model (best validation accuracy first); cheap, never cached."""
    return artifacts.list_models()


@st.cache_resource(show_spinner="Loading the model...", max_entries=8)
def _load_model(path: str, sha256: str):
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


@st.cache_resource(show_spinner="Reading the CIFAR-10 test images...")
def full_test_split() -> data.Split | None:
    """The full test split when CIFAR-10 is on this machine, else None: one batch file, read fast."""
    try:
        return data.load_test_split()
    except DataError:
        return None


def test_images() -> tuple[data.Split, str]:
    """The full test set when present, else the bundled sample, with a sentence saying which."""
    test = full_test_split()
    if test is None:
        return get_sample(), "the bundled sample (exact CIFAR-10 test images 0-999)"
    return test, ("the whole CIFAR-10 test set (10,000 images; in the shared copy, "
                          "images 1000-9999 are JPEG-derived)")


def model_picker(label: str = "Model", key: str = "model_choice") -> str | None:
    """A selectbox of saved models, the best (by validation accuracy) first; None when there are none."""
    models = shipped_models()
    if not models:
        st.warning("No saved model yet: train one on the Train page, or run `make run` from a full checkout.")
        return None
    names = [record["name"] for record in models]
    labels = {record["name"]: _model_label(record) for record in models}
    return st.selectbox(label, names, format_func=labels.get, key=key)


def _model_label(record: dict) -> str:
    accuracy = record.get("metrics", {}).get("val_accuracy")
    return f"{record['name']} (validation {accuracy:.1%})" if accuracy is not None else record["name"]


def show_user_error(error: UserError) -> None:
    """The one way a page reports a user's mistake: a plain message, no traceback."""
    st.error(str(error), icon=":material/error:")
