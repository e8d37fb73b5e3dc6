"""Save and load models atomically, each `NAME.keras` with its `NAME.json` sidecar.

Saving writes a temporary file in the same folder, fsyncs it and renames it
over the target, so a crash leaves the old file or the new one, never half of
one; the sidecar is written last and is the commit record (it holds the
sha256 of the `.keras` file). Loading accepts only regular `.keras` files
inside the models folder whose sha256 matches their sidecar, with Keras's
`safe_mode`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from cnn.errors import ModelFileError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SIDECAR_VERSION = 1


def default_models_dir() -> Path:
    """`CNN_MODELS_DIR` when set, else the project's `models/` folder."""
    return Path(os.environ.get("CNN_MODELS_DIR", PROJECT_ROOT / "models"))


# ---------------------------------------------------------------- atomic writes


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


def _replace_from_temp(target: Path, write) -> None:
    """Call `write(temp_path)`, fsync the temp file, rename it over `target`; clean up on failure."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # Keras insists on the .keras ending, so the temp name keeps the target's suffix.
    descriptor, temp_name = tempfile.mkstemp(prefix=f".tmp-{target.stem}-", suffix=target.suffix, dir=target.parent)
    os.close(descriptor)
    temp = Path(temp_name)
    os.chmod(temp, 0o644)  # mkstemp makes files private; models and sidecars are meant to be read
    try:
        write(temp)
        with temp.open("rb") as handle:
            os.fsync(handle.fileno())
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
    """`model.save` to `target` atomically."""
    _replace_from_temp(Path(target), lambda temp: model.save(temp))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sidecar_path(model_path: Path) -> Path:
    return Path(model_path).with_suffix(".json")


def save_model(model, target: Path, sidecar: dict) -> dict:
    """Save `model` to `target` (.keras) and its sidecar beside it, the sidecar last.

    Returns the sidecar as written (with `sha256` and `file_bytes` filled in).
    """
    target = Path(target)
    if target.suffix != ".keras":
        raise ModelFileError(f"A model file must end in .keras, not {target.name!r}.")
    save_keras_atomic(model, target)
    record = {**sidecar, "sidecar_version": SIDECAR_VERSION, "file": target.name,
              "sha256": sha256_of(target), "file_bytes": target.stat().st_size}
    atomic_write_text(sidecar_path(target), json.dumps(record, indent=1))
    return record


def update_sidecar(model_path: Path, **fields) -> dict:
    """Merge `fields` into a model's sidecar, atomically (the .keras file is untouched)."""
    record = read_sidecar(model_path)
    record.update(fields)
    atomic_write_text(sidecar_path(model_path), json.dumps(record, indent=1))
    return record


# ---------------------------------------------------------------- safe loading


def resolve_model_path(name_or_path: str | os.PathLike, models_dir: Path | None = None) -> Path:
    """The model file a user named, checked to be a regular `.keras` file inside `models_dir`.

    Accepts a bare name (`fast`), a file name (`fast.keras`) or a path. Refuses
    `.h5`, directories, URLs, and paths or symlinks that lead outside.
    """
    models_dir = Path(models_dir or default_models_dir()).resolve()
    text = str(name_or_path)
    if "://" in text or text.startswith("hf:"):
        raise ModelFileError(f"Models are loaded only from the models folder, not from {text!r}.")
    candidate = Path(text)
    if candidate.suffix in (".h5", ".hdf5"):
        raise ModelFileError("Legacy .h5 model files are not accepted: only .keras files from the models folder.")
    if candidate.suffix != ".keras":
        candidate = candidate.with_name(candidate.name + ".keras")
    if not candidate.is_absolute() and len(candidate.parts) == 1:
        candidate = models_dir / candidate
    resolved = candidate.resolve()
    if resolved.parent != models_dir and models_dir not in resolved.parents:
        raise ModelFileError(f"{text!r} is not in the models folder ({models_dir}): it will not be loaded.")
    if not resolved.exists():
        raise ModelFileError(f"No model file {resolved.name!r} in {models_dir}.")
    if not resolved.is_file():
        raise ModelFileError(f"{resolved.name!r} is not a regular .keras file.")
    return resolved


def read_sidecar(model_path: Path) -> dict:
    """The sidecar of `model_path`, or a ModelFileError saying what is wrong with it."""
    path = sidecar_path(model_path)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelFileError(f"{Path(model_path).name} has no sidecar {path.name}: it will not be loaded.") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ModelFileError(f"The sidecar {path.name} is corrupt (not valid JSON).") from None
    if not isinstance(record, dict):
        raise ModelFileError(f"The sidecar {path.name} is corrupt (not a JSON object).")
    return record


def verify_model_file(model_path: Path) -> dict:
    """Check the file's sha256 against its sidecar; return the sidecar."""
    record = read_sidecar(model_path)
    if record.get("sha256") != sha256_of(model_path):
        raise ModelFileError(
            f"{Path(model_path).name} does not match the sha256 in its sidecar: "
            "it was changed or damaged after saving, so it will not be loaded."
        )
    return record


def load_model(name_or_path: str | os.PathLike, models_dir: Path | None = None):
    """Load a verified model in safe mode, uncompiled. Returns (model, sidecar)."""
    import zipfile

    import keras

    import cnn.models  # noqa: F401 - registers the zoo's custom layers for deserialization

    path = resolve_model_path(name_or_path, models_dir)
    record = verify_model_file(path)
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path.name} is not a Keras model archive.")
    try:
        model = keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # noqa: BLE001 - every failure of a file we can't trust gets one message
        raise ModelFileError(f"{path.name} could not be loaded safely ({type(error).__name__}: {str(error)[:200]}).") from None
    if tuple(model.input_shape[1:]) != (32, 32, 3) or model.output_shape[-1] != 10:
        raise ModelFileError(f"{path.name} does not take 32x32 RGB images and give 10 classes.")
    return model, record


def list_models(models_dir: Path | None = None) -> list[dict]:
    """Every model in the folder that has a sidecar, as sidecar dicts with `path` added, best first."""
    folder = Path(models_dir or default_models_dir())
    found = []
    for path in sorted(folder.glob("*.keras")):
        if path.name.startswith(".tmp-") or path.is_symlink() or not path.is_file():
            continue
        try:
            record = read_sidecar(path)
        except ModelFileError:
            continue
        found.append({**record, "path": str(path), "name": path.stem})
    return sorted(found, key=lambda record: -(record.get("metrics", {}).get("val_accuracy") or 0))
