"""Saved models: each `NAME.keras` with its `NAME.json` sidecar, whose schema is defined here once.

Reading: the sidecar (`Sidecar`, with `Metrics` and one `Epoch` per history row)
is validated on every read: at most `MAX_SIDECAR_BYTES`, UTF-8, JSON nested at
most `MAX_SIDECAR_DEPTH` deep, every known field of its type. Whatever is wrong
with one model (its sidecar, its name, its archive) marks that model unusable
with a plain reason (`UnusableModel`) and never takes a page or command down.

Loading accepts only regular `.keras` files inside the models folder, named by
`MODEL_NAME`, whose sha256 matches their sidecar and whose zip directory stays
within `MAX_ARCHIVE_MEMBERS` / `MAX_EXPANDED_BYTES` (checked before Keras opens
the file), with Keras's `safe_mode`.

Saving changes the pair together, in a recoverable order, under a lock on the
models folder (`flock`, released by the kernel when a process dies):
1. the model and its sidecar are written under temporary names (`.tmp-*`) and fsynced;
2. they are renamed to `.pending-NAME.keras`, then `.pending-NAME.json`: the new pair is complete;
3. `.pending-NAME.keras` becomes `NAME.keras`, then `.pending-NAME.json` becomes `NAME.json`.
A kill before step 2 ends leaves the previous pair; after it, the new pair is
recovered: readers accept a pending sidecar that matches the model file, and
`tidy_models_folder` (run whenever models are listed, loaded or saved) finishes
the renames and deletes leftover temporary files once no save holds the lock.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import math
import os
import re
import stat
import struct
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cnn import INPUT_SHAPE, NUM_CLASSES
from cnn.errors import ModelFileError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SIDECAR_VERSION = 1

# A model's name is its file's stem: no separators, no leading dot (temporary files start with one).
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MODEL_NAME_RULE = "letters, digits, _, . and - (starting with a letter or digit, at most 64 characters)"
MAX_MODEL_ARGUMENT_CHARS = 1024  # a name or a path typed by a user

MAX_SIDECAR_BYTES = 1_000_000  # shipped sidecars are 6-12 KB; a 1,000-epoch history is about 200 KB
MAX_SIDECAR_DEPTH = 12  # shipped sidecars nest 5 deep (test_evaluation -> class_metrics -> class -> value)

MAX_MODEL_FILE_BYTES = 256 * 2**20  # the largest shipped model is 8 MB
MAX_EXPANDED_BYTES = 256 * 2**20  # Keras stores members uncompressed: the sum of their sizes
MAX_JSON_MEMBER_BYTES = 16 * 2**20  # config.json / metadata.json: 64 B to 33 KB when shipped
MAX_ARCHIVE_MEMBERS = 64  # Keras writes 3 (metadata.json, config.json, model.weights.h5)

TEMP_PREFIX = ".tmp-"
PENDING_PREFIX = ".pending-"


def default_models_dir() -> Path:
    """`CNN_MODELS_DIR` when set, else the project's `models/` folder."""
    return Path(os.environ.get("CNN_MODELS_DIR", PROJECT_ROOT / "models"))


# ---------------------------------------------------------------- errors


class SidecarError(ModelFileError):
    """A sidecar that is not a valid one; the message reads `sidecar: <what is wrong>`."""

    def __init__(self, reason: str):
        super().__init__(f"sidecar: {reason}")


class UnusableModel(ModelFileError):
    """One saved model cannot be used; `reason` says why, the message is `NAME: unusable (reason)`."""

    def __init__(self, name: str, reason: str):
        self.name, self.reason = name, reason
        super().__init__(f"{display_name(name)}: unusable ({reason})")


def display_name(name: str) -> str:
    """A model name fit for one line of text: as is when valid, else quoted, escaped and shortened."""
    if MODEL_NAME.fullmatch(name):
        return name
    return ascii(name[:40] + ("..." if len(name) > 40 else ""))


# ---------------------------------------------------------------- the sidecar's schema


def _json_type(python_type: type, described: str):
    """A schema check that a value is of one JSON type (text, true or false, an object)."""

    def check(value, where: str):
        if not isinstance(value, python_type):
            raise SidecarError(f"{where} must be {described}, not {_kind(value)}")
        return value

    return check


_text = _json_type(str, "text")
_flag = _json_type(bool, "true or false")
_object = _json_type(dict, "an object")
_list = _json_type(list, "a list")


def _number(value, where: str) -> float | int:
    # bool is an int in Python, but `true` is not a number in a sidecar.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SidecarError(f"{where} must be a number, not {_kind(value)}")
    return value


def _whole_number(minimum: int):
    """A schema check for a whole number of at least `minimum` (`true` is not one)."""

    def check(value, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise SidecarError(f"{where} must be a whole number of at least {minimum}, not {_kind(value)}")
        return value

    return check


_count = _whole_number(0)
_positive_count = _whole_number(1)


def _duration(unit: str):
    """A schema check for a finite number of `unit` (seconds, milliseconds) of at least 0."""

    def check(value, where: str) -> float | int:
        if not math.isfinite(_number(value, where)) or value < 0:
            raise SidecarError(f"{where} must be a number of {unit} of at least 0")
        return value

    return check


_seconds = _duration("seconds")
_milliseconds = _duration("milliseconds")


def _accuracy(value, where: str) -> float | int:
    if not 0 <= _number(value, where) <= 1:  # NaN fails too
        raise SidecarError(f"{where} must be a number from 0 to 1, not {_kind(value)}")
    return value


def _sha256(value, where: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{64}", value):
        raise SidecarError(f"{where} must be 64 lowercase hexadecimal digits")
    return value


def _version(value, where: str) -> int:
    if _positive_count(value, where) > SIDECAR_VERSION:
        raise SidecarError(f"{where} {value} is newer than this dashboard reads ({SIDECAR_VERSION})")
    return value


def _kind(value) -> str:
    """How a wrong value is named in a message: its JSON type, and a short form of short text."""
    if isinstance(value, str):
        return f"the text {ascii(value)}" if len(value) <= 20 else "text"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return repr(value)
    return {dict: "an object", list: "a list"}.get(type(value), type(value).__name__)


def _scalar_metric(key: str, value, where: str):
    """An extra metric: a number (an accuracy when its key says so), text, true/false or null."""
    if key.endswith("accuracy"):
        return _accuracy(value, where)
    if value is not None and not isinstance(value, (str, int, float)):
        raise SidecarError(f"{where} must be a number or text, not {_kind(value)}")
    return value


def _known(check, required: bool = False, default=None):
    """A schema field: `check(value, where)` validates it; a missing or null optional one is `default`."""
    return field(default=default, metadata={"check": check, "required": required})


def _read_fields(cls, record: dict, prefix: str) -> tuple[dict, dict]:
    """(known fields checked by their schema, the other keys untouched) of a JSON object."""
    known = {}
    for spec in fields(cls):
        check = spec.metadata.get("check")
        if check is None:
            continue
        value = record.get(spec.name)
        if value is not None:
            known[spec.name] = check(value, prefix + spec.name)
        elif spec.metadata["required"]:
            raise SidecarError(f"{prefix}{spec.name} is missing")
    others = {key: value for key, value in record.items() if key not in known and value is not None}
    return known, others


def _present_fields(instance) -> dict:
    """The known fields that have a value, in schema order (None ones were absent from the JSON)."""
    return {
        spec.name: getattr(instance, spec.name)
        for spec in fields(instance)
        if "check" in spec.metadata and getattr(instance, spec.name) is not None
    }


@dataclass(frozen=True)
class Metrics:
    """Accuracies (0-1), losses and image counts of a model; unknown keys are kept as `extra`."""

    val_accuracy: float | None = _known(_accuracy)
    val_loss: float | None = _known(_number)
    val_images: int | None = _known(_count)
    train_images: int | None = _known(_count)
    test_clean_accuracy: float | None = _known(_accuracy)
    test_clean_images: int | None = _known(_count)
    test_clean_split: str | None = _known(_text)
    test_all_accuracy: float | None = _known(_accuracy)
    test_all_images: int | None = _known(_count)
    test_all_split: str | None = _known(_text)
    latency_p50_ms: float | None = _known(_milliseconds)  # one image through Predictor (`python -m cnn latency`)
    latency_p95_ms: float | None = _known(_milliseconds)
    latency_measured_on: str | None = _known(_text)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, value, where: str = "metrics") -> Metrics:
        known, others = _read_fields(cls, _object(value, where), where + ".")
        extra = {key: _scalar_metric(key, item, f"{where}.{key}") for key, item in others.items()}
        return cls(**known, extra=extra)

    def to_dict(self) -> dict:
        return {**_present_fields(self), **self.extra}


@dataclass(frozen=True)
class Epoch:
    """One row of the training history: the epoch number (from 1) and its figures."""

    epoch: int
    values: Mapping[str, float | int | None]

    @classmethod
    def from_json(cls, value, where: str) -> Epoch:
        row = _object(value, where)
        epoch = _positive_count(row.get("epoch"), f"{where}.epoch")
        values = {}
        for key, item in row.items():
            if key != "epoch":
                # Losses may be NaN or infinite in a diverged run; accuracies are always 0-1.
                values[key] = (
                    None
                    if item is None
                    else (
                        _accuracy(item, f"{where}.{key}")
                        if key.endswith("accuracy")
                        else _number(item, f"{where}.{key}")
                    )
                )
        return cls(epoch=epoch, values=values)

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, **self.values}


def _history(value, where: str) -> tuple[Epoch, ...]:
    return tuple(Epoch.from_json(row, f"{where}[{index}]") for index, row in enumerate(_list(value, where)))


def _metrics(value, where: str) -> Metrics:
    return Metrics.from_json(value, where)


@dataclass(frozen=True)
class Sidecar:
    """Everything saved beside a model: its provenance, history and figures, and the sha256 that binds them.

    Built only by `parse` / `from_json`, which check every field; `to_dict` gives the JSON object back
    (fields that were absent stay absent, unknown fields are kept unchanged in `extra`).
    """

    sidecar_version: int = _known(_version, required=True)
    sha256: str = _known(_sha256, required=True)
    file: str | None = _known(_text)
    file_bytes: int | None = _known(_count)
    model: str | None = _known(_text)
    description: str | None = _known(_text)
    config: Mapping[str, Any] | None = _known(_object)
    command: str | None = _known(_text)
    epochs: int | None = _known(_count)
    stopped_early: bool | None = _known(_flag)
    wall_time_s: float | None = _known(_seconds)
    hardware: str | None = _known(_text)
    trained_at: str | None = _known(_text)
    parameters: int | None = _known(_count)
    history: tuple[Epoch, ...] = _known(_history, default=())
    metrics: Metrics = _known(_metrics, default=Metrics())
    data: Mapping[str, Any] | None = _known(_object)
    test_evaluation: Mapping[str, Any] | None = _known(_object)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: bytes) -> Sidecar:
        """The sidecar in `raw` (a file's bytes), or a SidecarError saying plainly what is wrong."""
        if len(raw) > MAX_SIDECAR_BYTES:
            raise SidecarError(f"larger than {MAX_SIDECAR_BYTES // 1_000_000} MB")
        if not raw.strip():
            raise SidecarError("the file is empty")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SidecarError("not UTF-8 text") from None
        try:
            record = json.loads(text)
        except RecursionError:  # the C parser recurses once per [ or {
            raise SidecarError(f"nested more than {MAX_SIDECAR_DEPTH} levels deep") from None
        except ValueError as error:
            raise SidecarError(f"not valid JSON (line {getattr(error, 'lineno', '?')})") from None
        if _nesting_exceeds(record, MAX_SIDECAR_DEPTH):
            raise SidecarError(f"nested more than {MAX_SIDECAR_DEPTH} levels deep")
        return cls.from_json(record)

    @classmethod
    def from_json(cls, record) -> Sidecar:
        """A Sidecar from a parsed JSON value (a dict), every known field checked."""
        if not isinstance(record, dict):
            raise SidecarError(f"must be a JSON object, not {_kind(record)}")
        known, others = _read_fields(cls, record, "")
        return cls(**known, extra=others)

    def to_dict(self) -> dict:
        """The sidecar as a JSON object (a fresh copy: changing it changes nothing here)."""
        record = _present_fields(self)
        record["history"] = [row.to_dict() for row in self.history]
        record["metrics"] = self.metrics.to_dict()
        return copy.deepcopy({**record, **self.extra})


def _nesting_exceeds(value, limit: int) -> bool:
    """Whether lists/objects nest deeper than `limit` (walked without recursion)."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


# ---------------------------------------------------------------- names and paths


def check_model_name(name: str) -> str:
    """`name` if it may name a model file (`MODEL_NAME`), else a ModelFileError in one plain line."""
    if not name:
        raise ModelFileError("A model name cannot be empty.")
    if any(ord(character) < 32 or ord(character) == 127 for character in name):
        raise ModelFileError(f"A model name cannot contain control characters such as NUL ({display_name(name)}).")
    if len(name) > 64:
        raise ModelFileError(f"A model name has at most 64 characters, not {len(name):,}.")
    if not MODEL_NAME.fullmatch(name):
        raise ModelFileError(f"{display_name(name)} is not a model name: use {MODEL_NAME_RULE}.")
    return name


def sidecar_path(model_path: Path) -> Path:
    """`NAME.json` beside `NAME.keras`."""
    return Path(model_path).with_suffix(".json")


def _pending_paths(model_path: Path) -> tuple[Path, Path]:
    """(`.pending-NAME.keras`, `.pending-NAME.json`): the new pair between its two commits."""
    model_path = Path(model_path)
    return (
        model_path.with_name(f"{PENDING_PREFIX}{model_path.name}"),
        model_path.with_name(f"{PENDING_PREFIX}{model_path.stem}.json"),
    )


def resolve_model_path(name_or_path: str | os.PathLike, models_dir: Path | None = None) -> Path:
    """The model file a user named, checked to be a regular `.keras` file inside `models_dir`.

    Accepts a bare name (`fast`), a file name (`fast.keras`) or a path. Refuses
    bad names (empty, `.`, NUL, too long), `.h5`, directories, URLs, and paths
    or symlinks that lead outside. Every refusal is one ModelFileError line.
    """
    models_dir = Path(models_dir or default_models_dir()).resolve()
    text = os.fspath(name_or_path)
    if not isinstance(text, str):
        raise ModelFileError("A model is named by text, not by bytes.")
    if len(text) > MAX_MODEL_ARGUMENT_CHARS:
        raise ModelFileError(
            f"A model name or path has at most {MAX_MODEL_ARGUMENT_CHARS:,} characters, not {len(text):,}."
        )
    if "://" in text or text.startswith("hf:"):
        raise ModelFileError(f"Models are loaded only from the models folder, not from {display_name(text)}.")
    candidate = Path(text)
    if candidate.suffix in (".h5", ".hdf5"):
        raise ModelFileError("Legacy .h5 model files are not accepted: only .keras files from the models folder.")
    stem = candidate.name[: -len(".keras")] if candidate.name.endswith(".keras") else candidate.name
    check_model_name(stem)
    candidate = candidate.with_name(f"{stem}.keras")
    if not candidate.is_absolute() and len(candidate.parts) == 1:
        candidate = models_dir / candidate
    try:
        resolved = candidate.resolve()
        if resolved.parent != models_dir and models_dir not in resolved.parents:
            raise ModelFileError(
                f"{display_name(text)} is not in the models folder ({models_dir}): it will not be loaded."
            )
        if not resolved.exists():
            raise ModelFileError(f"No model file {resolved.name!r} in {models_dir}.")
        if not resolved.is_file():
            raise ModelFileError(f"{resolved.name!r} is not a regular .keras file.")
    except OSError as error:  # e.g. a path component longer than the file system allows
        raise ModelFileError(f"{display_name(text)} cannot be opened as a model file ({error.strerror}).") from None
    return resolved


# ---------------------------------------------------------------- reading sidecars


def _read_capped(path: Path, limit: int) -> bytes:
    """At most `limit + 1` bytes of a regular file (never follows a symlink, never blocks on a FIFO)."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise SidecarError("not a regular file")
        return handle.read(limit + 1)


def _sidecar_file(path: Path) -> Sidecar:
    """The sidecar stored at `path`: FileNotFoundError when absent, SidecarError when invalid."""
    try:
        raw = _read_capped(path, MAX_SIDECAR_BYTES)
    except FileNotFoundError:
        raise
    except OSError as error:  # a symlink (ELOOP), a folder, no permission
        raise SidecarError(f"cannot be read ({error.strerror})") from None
    return Sidecar.parse(raw)


def load_sidecar(model_path: Path) -> Sidecar:
    """The validated sidecar of `model_path` (a pending one while a save is between its renames).

    Raises UnusableModel (`NAME: unusable (sidecar: ...)`) when it is missing or invalid.
    """
    model_path = Path(model_path)
    for path in (sidecar_path(model_path), _pending_paths(model_path)[1]):
        try:
            return _sidecar_file(path)
        except FileNotFoundError:
            continue
        except SidecarError as error:
            raise UnusableModel(model_path.stem, str(error)) from None
    raise UnusableModel(model_path.stem, f"no sidecar {sidecar_path(model_path).name}: it will not be loaded")


def read_sidecar(model_path: Path) -> dict:
    """`load_sidecar(model_path)` as a plain dict (`Sidecar.to_dict()`), for tables and tests."""
    return load_sidecar(model_path).to_dict()


def _check_model_file_size(model_path: Path) -> None:
    size = Path(model_path).stat().st_size
    if size > MAX_MODEL_FILE_BYTES:
        raise UnusableModel(
            Path(model_path).stem,
            f"the file is {size / 2**20:,.0f} MB, more than the {MAX_MODEL_FILE_BYTES // 2**20} MB allowed",
        )


def verified_sidecar(model_path: Path) -> Sidecar:
    """The sidecar whose sha256 matches the model file, or a ModelFileError saying what is wrong.

    A save in progress (or killed) between its two renames has a new `NAME.keras`
    beside the old `NAME.json`; its pending sidecar matches then, so it is accepted.
    """
    model_path = Path(model_path)
    _check_model_file_size(model_path)
    digest = sha256_of(model_path)
    live_path, (_, pending_path) = sidecar_path(model_path), _pending_paths(model_path)
    problem = None
    # The live sidecar again last: a save may have completed while we were looking.
    for path in (live_path, pending_path, live_path):
        try:
            sidecar = _sidecar_file(path)
        except FileNotFoundError:
            continue
        except SidecarError as error:
            problem = problem or (UnusableModel(model_path.stem, str(error)) if path == live_path else None)
            continue
        if sidecar.sha256 == digest:
            return sidecar
        problem = problem or ModelFileError(
            f"{model_path.name} does not match the sha256 in its sidecar: "
            "it was changed or damaged after saving, so it will not be loaded."
        )
    raise problem or UnusableModel(model_path.stem, f"no sidecar {live_path.name}: it will not be loaded")


def verify_model_file(model_path: Path) -> dict:
    """`verified_sidecar(model_path)` as a plain dict."""
    return verified_sidecar(model_path).to_dict()


# ---------------------------------------------------------------- the archive


def _zip_member_count(path: Path) -> int | None:
    """The member count the zip's end record declares (read as `zipfile` finds it); None if no zip."""
    end_record = struct.Struct("<4s4H2LH")
    size = path.stat().st_size
    with path.open("rb") as handle:
        handle.seek(max(0, size - end_record.size - 0xFFFF))  # the record plus the longest comment
        tail = handle.read()
    # Like zipfile: first the record without a comment at the very end, else the last signature.
    start = len(tail) - end_record.size
    if not (start >= 0 and tail[start : start + 4] == b"PK\x05\x06" and tail[-2:] == b"\0\0"):
        start = tail.rfind(b"PK\x05\x06")
    if start < 0 or len(tail) - start < end_record.size:
        return None
    return end_record.unpack_from(tail, start)[4]  # the total number of entries


def check_archive(model_path: Path) -> None:
    """Refuse a `.keras` archive whose zip directory promises too much, before Keras opens it.

    First the member count from the end record (found as `zipfile` finds it, so
    a directory of millions of entries is never parsed), then each member's
    declared size (which bounds what `zipfile` will inflate): a JSON member over
    `MAX_JSON_MEMBER_BYTES`, or more than `MAX_EXPANDED_BYTES` in all.
    """
    import zipfile

    model_path = Path(model_path)
    name = model_path.stem
    declared = _zip_member_count(model_path)
    if declared is None:
        raise UnusableModel(name, "not a Keras model archive (no zip directory)")
    if declared > MAX_ARCHIVE_MEMBERS:
        raise UnusableModel(
            name, f"the archive has {declared:,} members, more than the {MAX_ARCHIVE_MEMBERS} a Keras model has"
        )
    try:
        with zipfile.ZipFile(model_path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise UnusableModel(name, f"not a Keras model archive ({error})") from None
    for member in members:
        if member.filename.endswith(".json") and member.file_size > MAX_JSON_MEMBER_BYTES:
            raise UnusableModel(
                name,
                f"{ascii(member.filename[:60])} would expand to "
                f"{member.file_size / 2**20:,.0f} MB, more than the "
                f"{MAX_JSON_MEMBER_BYTES // 2**20} MB allowed",
            )
    expanded = sum(member.file_size for member in members)
    if expanded > MAX_EXPANDED_BYTES:
        raise UnusableModel(
            name,
            f"the archive would expand to {expanded / 2**20:,.0f} MB, more than the "
            f"{MAX_EXPANDED_BYTES // 2**20} MB allowed",
        )


# ---------------------------------------------------------------- the folder: lock, temporaries, recovery


@contextmanager
def _folder_lock(folder: Path, wait: bool) -> Iterator[bool]:
    """Hold an exclusive lock on the folder itself; yields False when `wait` is off and it is taken.

    flock is released by the kernel when its holder dies, so a killed save never blocks anyone.
    """
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(descriptor)  # closing releases the lock


def tidy_models_folder(models_dir: Path | None = None) -> None:
    """Finish a save that was killed after its new pair was complete, and delete leftover temporary files.

    Does nothing while a save holds the folder's lock (its files are not leftovers)
    or where the folder cannot be changed (a read-only deployment).
    """
    folder = Path(models_dir or default_models_dir())
    try:
        with _folder_lock(folder, wait=False) as held:
            if held:
                _tidy_locked(folder)
    except OSError:  # no such folder, or not ours to change
        return


def _tidy_locked(folder: Path) -> None:
    for pending_sidecar in folder.glob(f"{PENDING_PREFIX}*.json"):
        _finish_pending_pair(folder, pending_sidecar)
    for leftover in [*folder.glob(f"{TEMP_PREFIX}*"), *folder.glob(f"{PENDING_PREFIX}*")]:
        try:
            leftover.unlink()
        except OSError:
            pass


def _finish_pending_pair(folder: Path, pending_sidecar: Path) -> None:
    """Rename a complete pending pair into place (steps 3 of a save); anything else is left to delete."""
    name = pending_sidecar.name[len(PENDING_PREFIX) : -len(".json")]
    if not MODEL_NAME.fullmatch(name):
        return
    target = folder / f"{name}.keras"
    pending_model, _ = _pending_paths(target)
    try:
        sidecar = _sidecar_file(pending_sidecar)
        if _matches(pending_model, sidecar):
            os.replace(pending_model, target)
        if _matches(target, sidecar):
            os.replace(pending_sidecar, sidecar_path(target))
            _fsync_dir(folder)
    except (OSError, ModelFileError):
        return


def _matches(model_path: Path, sidecar: Sidecar) -> bool:
    """Whether `model_path` is a regular file, not oversized, whose sha256 is the sidecar's."""
    if model_path.is_symlink() or not model_path.is_file():
        return False
    return model_path.stat().st_size <= MAX_MODEL_FILE_BYTES and sha256_of(model_path) == sidecar.sha256


# ---------------------------------------------------------------- writing


def _fsync_dir(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _fsync_file(path: Path) -> None:
    with Path(path).open("rb") as handle:
        os.fsync(handle.fileno())


def _new_temp(folder: Path, stem: str, suffix: str) -> Path:
    """An empty, readable temporary file in `folder` (Keras insists on the .keras ending, so it is kept)."""
    descriptor, name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{stem}-{os.getpid()}-", suffix=suffix, dir=folder)
    os.close(descriptor)
    os.chmod(name, 0o644)  # mkstemp makes files private; models and sidecars are meant to be read
    return Path(name)


def _replace_from_temp(target: Path, write) -> None:
    """Call `write(temp_path)`, fsync the temp file, rename it over `target`; clean up on failure."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = _new_temp(target.parent, target.stem, target.suffix)
    try:
        write(temp)
        _fsync_file(temp)
        os.replace(temp, target)
        _fsync_dir(target.parent)
    finally:
        temp.unlink(missing_ok=True)


def atomic_write_text(target: Path, text: str) -> None:
    """Write `text` to `target` atomically."""
    _replace_from_temp(Path(target), lambda temp: temp.write_text(text))


def atomic_write_bytes(target: Path, content: bytes) -> None:
    """Write `content` to `target` atomically."""
    _replace_from_temp(Path(target), lambda temp: temp.write_bytes(content))


def save_keras_atomic(model, target: Path) -> None:
    """`model.save` to `target` atomically (one file: run-folder checkpoints)."""
    _replace_from_temp(Path(target), lambda temp: model.save(temp))


def sha256_of(path: Path) -> str:
    """The file's sha256 as 64 hex digits, read in 1 MB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sidecar_text(sidecar: Sidecar) -> str:
    return json.dumps(sidecar.to_dict(), indent=1)


def save_model(model, target: Path, sidecar: dict) -> dict:
    """Save `model` to `target` (.keras) with its sidecar beside it, the pair changing together.

    The sidecar is checked against the schema before anything is renamed. A kill
    at any moment leaves the previous pair or the new one (see the module's
    docstring). Returns the sidecar as written (with `sha256` and `file_bytes`).
    """
    target = Path(target)
    if target.suffix != ".keras":
        raise ModelFileError(f"A model file must end in .keras, not {target.name!r}.")
    check_model_name(target.stem)
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True)
    pending_model, pending_sidecar = _pending_paths(target)
    with _folder_lock(folder, wait=True):
        _tidy_locked(folder)  # a pair left by a killed save is finished before this one starts
        try:
            temp_model = _new_temp(folder, target.stem, ".keras")
            model.save(temp_model)
            _fsync_file(temp_model)
            record = Sidecar.from_json(
                {
                    **sidecar,
                    "sidecar_version": SIDECAR_VERSION,
                    "file": target.name,
                    "sha256": sha256_of(temp_model),
                    "file_bytes": temp_model.stat().st_size,
                }
            )
            temp_sidecar = _new_temp(folder, target.stem, ".json")
            temp_sidecar.write_text(_sidecar_text(record))
            _fsync_file(temp_sidecar)
            os.replace(temp_model, pending_model)
            os.replace(temp_sidecar, pending_sidecar)
            _fsync_dir(folder)  # the new pair is complete: from here on it is recovered, never lost
            os.replace(pending_model, target)
            os.replace(pending_sidecar, sidecar_path(target))
            _fsync_dir(folder)
        except Exception:
            _tidy_locked(folder)  # delete the temporaries, or finish a pair that was already complete
            raise
    return record.to_dict()


def update_sidecar(model_path: Path, **fields_to_set) -> dict:
    """Merge fields into a model's sidecar, checked and atomically (the .keras file is untouched)."""
    model_path = Path(model_path)
    with _folder_lock(model_path.parent, wait=True):
        _tidy_locked(model_path.parent)
        record = Sidecar.from_json({**load_sidecar(model_path).to_dict(), **fields_to_set})
        _replace_from_temp(sidecar_path(model_path), lambda temp: temp.write_text(_sidecar_text(record)))
    return record.to_dict()


# ---------------------------------------------------------------- loading and listing


# One model load at a time per process. A dashboard server whose sessions loaded two models at once
# (the first also importing TensorFlow) died of heap corruption ("malloc(): unaligned tcache chunk
# detected", benchmarks/classroom_load.py with 30 sessions): Keras deserialization is not thread-safe.
_LOAD_LOCK = threading.Lock()


def load_model(name_or_path: str | os.PathLike, models_dir: Path | None = None):
    """Load a verified model in safe mode, uncompiled. Returns (model, sidecar as a dict).

    Thread-safe: loads in one process take turns (`_LOAD_LOCK`); each model is loaded once by the
    dashboard's cache, so the wait is only ever for another model's first load.
    """
    path = resolve_model_path(name_or_path, models_dir)
    tidy_models_folder(path.parent)
    sidecar = verified_sidecar(path)
    check_archive(path)
    with _LOAD_LOCK:
        model = _keras_load(path)
    if tuple(model.input_shape[1:]) != INPUT_SHAPE or model.output_shape[-1] != NUM_CLASSES:
        raise ModelFileError(f"{path.name} does not take 32x32 RGB images and give 10 classes.")
    return model, sidecar.to_dict()


def keras_load(path: str | os.PathLike, *, compile: bool = False):
    """`keras.models.load_model` in safe mode, with the zoo's own layers registered: the one place a Keras file
    is read (a shipped model, or a run's checkpoint in a fresh worker process that has built no model yet)."""
    import keras

    import cnn.models  # noqa: F401 - registers the zoo's custom layers for deserialization

    return keras.models.load_model(path, compile=compile, safe_mode=True)


def _keras_load(path: Path):
    """`keras_load`, uncompiled; every failure one ModelFileError."""
    try:
        return keras_load(path)
    except Exception as error:  # noqa: BLE001 - every failure of a file we can't trust gets one message
        if "safe_mode" in str(error):  # Keras's refusal to deserialize Python code
            raise ModelFileError(
                f"{path.name} holds Python code (a Lambda layer or a function), which Keras's "
                "safe mode refuses to run: it will not be loaded."
            ) from None
        raise ModelFileError(
            f"{path.name} could not be loaded safely ({type(error).__name__}: {str(error)[:200]})."
        ) from None


@dataclass(frozen=True)
class SavedModel:
    """One `.keras` file of the models folder: its sidecar when usable, else why it is not."""

    name: str
    path: Path
    sidecar: Sidecar | None = None
    problem: str | None = None

    @property
    def usable(self) -> bool:
        return self.problem is None

    @property
    def val_accuracy(self) -> float | None:
        return self.sidecar.metrics.val_accuracy if self.sidecar else None

    def describe(self) -> str:
        """One line: `NAME: unusable (reason)` or `NAME: validation 85.1%`."""
        if not self.usable:
            return f"{display_name(self.name)}: unusable ({self.problem})"
        accuracy = self.val_accuracy
        return f"{self.name}: validation {accuracy:.1%}" if accuracy is not None else f"{self.name}: usable"

    def record(self) -> dict:
        """The sidecar as a dict with `name` and `path` added (the rows of the pages' tables)."""
        return {**self.sidecar.to_dict(), "path": str(self.path), "name": self.name}


def _saved_model(path: Path) -> SavedModel:
    name = path.name[: -len(".keras")]
    try:
        check_model_name(name)
        if path.is_symlink() or not path.is_file():
            raise ModelFileError("not a regular .keras file")
        return SavedModel(name, path, sidecar=load_sidecar(path))
    except UnusableModel as error:
        return SavedModel(name, path, problem=error.reason)
    except ModelFileError as error:
        return SavedModel(name, path, problem=str(error))


def scan_models(models_dir: Path | None = None) -> list[SavedModel]:
    """Every `.keras` file of the models folder: usable ones best first (validation accuracy), then the rest.

    Cheap (sidecars only, no sha256): loading verifies. Tidies the folder first.
    """
    folder = Path(models_dir or default_models_dir())
    tidy_models_folder(folder)
    try:
        paths = sorted(path for path in folder.glob("*.keras") if not path.name.startswith("."))
    except OSError:
        return []
    found = [_saved_model(path) for path in paths]
    usable = sorted((entry for entry in found if entry.usable), key=lambda entry: -(entry.val_accuracy or 0))
    return usable + [entry for entry in found if not entry.usable]


def list_models(models_dir: Path | None = None) -> list[dict]:
    """The usable models as sidecar dicts with `name` and `path` added, best first."""
    return [entry.record() for entry in scan_models(models_dir) if entry.usable]
