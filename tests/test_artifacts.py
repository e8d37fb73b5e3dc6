"""cnn.artifacts: the sidecar schema, bad names and archives, and the model + sidecar pair changing together.

A bad sidecar, name or archive must mark ONE model unusable with a plain reason,
in the library, the CLI (exit 2, one line) and the pages (which still render,
the other models still usable). A save killed at any moment must leave the
previous pair or the new one, and no temporary file once the folder is tidied.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tracemalloc
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from cnn import artifacts
from cnn.__main__ import main
from cnn.artifacts import (
    MAX_SIDECAR_BYTES,
    Sidecar,
    SidecarError,
    check_archive,
    load_model,
    load_sidecar,
    read_sidecar,
    resolve_model_path,
    save_model,
    scan_models,
    sha256_of,
    tidy_models_folder,
    update_sidecar,
    verified_sidecar,
)
from cnn.errors import ModelFileError
from tests.helpers_cli import run_cnn

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models"


def sidecar_bytes(**changes) -> bytes:
    """A valid sidecar's JSON with some fields changed (None removes one)."""
    record = {
        "sidecar_version": 1,
        "sha256": "0" * 64,
        "model": "base",
        "epochs": 1,
        "history": [{"epoch": 1, "loss": 2.0, "accuracy": 0.3}],
        "metrics": {"val_accuracy": 0.5},
    }
    record.update(changes)
    return json.dumps({key: value for key, value in record.items() if value is not None}).encode()


def nested(depth: int):
    value = []
    for _ in range(depth - 1):
        value = [value]
    return value


HUGE = object()  # a 50 MB sidecar, written sparse
BAD_SIDECARS = {
    "metrics_great": (sidecar_bytes(metrics="great"), "sidecar: metrics must be an object, not the text 'great'"),
    "string_accuracy": (
        sidecar_bytes(metrics={"val_accuracy": "0.93"}),
        "sidecar: metrics.val_accuracy must be a number, not the text '0.93'",
    ),
    "percent_accuracy": (
        sidecar_bytes(metrics={"val_accuracy": 93.0}),
        "sidecar: metrics.val_accuracy must be a number from 0 to 1, not 93.0",
    ),
    "not_a_dict": (b'["fast", 0.93]', "sidecar: must be a JSON object, not a list"),
    "brackets": (b"[" * 100_000, "sidecar: nested more than 12 levels deep"),
    "deep_config": (sidecar_bytes(config={"layers": nested(40)}), "sidecar: nested more than 12 levels deep"),
    "empty": (b"", "sidecar: the file is empty"),
    "huge": (HUGE, "sidecar: larger than 1 MB"),
    "latin1": (b'{"model": "caf\xe9"}', "sidecar: not UTF-8 text"),
    "bad_json": (b'{"model": ', "sidecar: not valid JSON (line 1)"),
    "negative_latency": (
        sidecar_bytes(metrics={"latency_p50_ms": -3}),
        "sidecar: metrics.latency_p50_ms must be a number of milliseconds of at least 0",
    ),
    "float_epoch": (
        sidecar_bytes(history=[{"epoch": 1.5}]),
        "sidecar: history[0].epoch must be a whole number of at least 1, not 1.5",
    ),
    "history_text": (sidecar_bytes(history="lots"), "sidecar: history must be a list, not the text 'lots'"),
    "true_parameters": (
        sidecar_bytes(parameters=True),
        "sidecar: parameters must be a whole number of at least 0, not true",
    ),
    "no_sha": (sidecar_bytes(sha256=None), "sidecar: sha256 is missing"),
    "future": (sidecar_bytes(sidecar_version=2), "sidecar: sidecar_version 2 is newer than this dashboard reads (1)"),
}


def write_sidecar(path: Path, content) -> None:
    if content is HUGE:
        with path.open("wb") as handle:
            handle.truncate(50 * 2**20)  # sparse: 50 MB long, almost nothing on disk
    else:
        path.write_bytes(content)


def write_bad_models(folder: Path) -> None:
    """One `.keras` file per bad sidecar (the listing never opens it), plus files with bad names."""
    for name, (content, _) in BAD_SIDECARS.items():
        (folder / f"{name}.keras").write_bytes(b"PK not opened")
        write_sidecar(folder / f"{name}.json", content)
    for name in ("has space", "y" * 70):
        (folder / f"{name}.keras").write_bytes(b"PK not opened")
        (folder / f"{name}.json").write_bytes(sidecar_bytes())


# ---------------------------------------------------------------- the schema


def test_every_shipped_sidecar_reads_unchanged():
    paths = sorted(SHIPPED.glob("*.json"))
    assert len(paths) >= 7
    for path in paths:
        raw = path.read_bytes()
        sidecar = Sidecar.parse(raw)
        assert sidecar.to_dict() == json.loads(raw), path.name
        assert 0 < sidecar.metrics.val_accuracy < 1 and sidecar.history[0].epoch == 1
    entries = scan_models(SHIPPED)
    assert [entry.problem for entry in entries] == [None] * len(paths)
    assert [entry.val_accuracy for entry in entries] == sorted((e.val_accuracy for e in entries), reverse=True)


def test_unknown_fields_are_kept_and_absent_ones_stay_absent():
    raw = json.dumps(
        {"sidecar_version": 1, "sha256": "a" * 64, "builder": "fast", "metrics": {"val_accuracy": 1, "note": "by hand"}}
    ).encode()
    record = Sidecar.parse(raw).to_dict()
    assert record == {
        "sidecar_version": 1,
        "sha256": "a" * 64,
        "builder": "fast",
        "history": [],
        "metrics": {"val_accuracy": 1, "note": "by hand"},
    }
    record["metrics"]["val_accuracy"] = "changed"  # a copy: the parsed sidecar is not changed
    assert Sidecar.parse(raw).to_dict()["metrics"]["val_accuracy"] == 1


@pytest.mark.parametrize("name", list(BAD_SIDECARS))
def test_a_bad_sidecar_gets_its_plain_reason(name, tmp_path):
    content, reason = BAD_SIDECARS[name]
    write_sidecar(tmp_path / "model.json", content)
    with pytest.raises(ModelFileError) as caught:
        load_sidecar(tmp_path / "model.keras")
    assert str(caught.value) == f"model: unusable ({reason})"


def test_a_huge_sidecar_is_never_read_whole(tmp_path):
    write_sidecar(tmp_path / "huge.json", HUGE)
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match="larger than 1 MB"):
            load_sidecar(tmp_path / "huge.keras")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * MAX_SIDECAR_BYTES


def test_a_sidecar_that_is_not_a_regular_file_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "fifo.json")  # opening a FIFO for reading would wait for a writer
    with pytest.raises(ModelFileError, match="sidecar: not a regular file"):
        load_sidecar(tmp_path / "fifo.keras")
    (tmp_path / "link.json").symlink_to(SHIPPED / "fast.json")
    with pytest.raises(ModelFileError, match="sidecar: cannot be read"):
        load_sidecar(tmp_path / "link.keras")


# ---------------------------------------------------------------- names


BAD_NAMES = {
    "": "A model name cannot be empty.",
    ".": "A model name cannot be empty.",
    "..": "'..' is not a model name",
    "a\x00b": "cannot contain control characters such as NUL ('a\\x00b')",
    "fast\n": "cannot contain control characters",
    "x" * 300: "A model name has at most 64 characters, not 300.",
    "_x": "'_x' is not a model name",
    ".tmp-fast": "'.tmp-fast' is not a model name",
    "a/b": "'a/b' is not in the models folder",
    "../fast": "'../fast' is not in the models folder",
    "/etc/passwd": "'/etc/passwd' is not in the models folder",
    "z" * 300 + "/fast": "is not in the models folder",
    "a/" * 600: "A model name or path has at most 1,024 characters, not 1,200.",
}


@pytest.mark.parametrize("name", list(BAD_NAMES), ids=lambda name: ascii(name[:12]))
def test_a_bad_model_name_gets_one_plain_line(name, models_dir, capsys):
    with pytest.raises(ModelFileError) as caught:
        resolve_model_path(name, models_dir)
    assert BAD_NAMES[name] in str(caught.value) and "\n" not in str(caught.value)
    for command in ("info", "evaluate", "predict"):
        argv = ["--models-dir", str(models_dir), command, name] + (["x.png"] if command == "predict" else [])
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and BAD_NAMES[name] in err and err.count("\n") == 1


def test_files_with_bad_names_are_listed_as_unusable(models_dir):
    write_bad_models(models_dir)
    problems = {entry.name: entry.problem for entry in scan_models(models_dir) if entry.name in ("has space", "y" * 70)}
    assert problems["has space"].startswith("'has space' is not a model name")
    assert problems["y" * 70] == "A model name has at most 64 characters, not 70."


# ---------------------------------------------------------------- the CLI


@pytest.mark.parametrize("name", list(BAD_SIDECARS))
def test_the_cli_says_why_a_model_is_unusable_in_one_line(name, models_dir, capsys):
    content, reason = BAD_SIDECARS[name]
    (models_dir / f"{name}.keras").write_bytes(b"PK not opened")
    write_sidecar(models_dir / f"{name}.json", content)
    assert main(["--models-dir", str(models_dir), "info", name]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {name}: unusable ({reason})\n"


def test_the_cli_lists_unusable_models_beside_the_usable_ones(models_dir, tiny_model, capsys):
    save_model(tiny_model, models_dir / "good.keras", {"metrics": {"val_accuracy": 0.5}})
    write_bad_models(models_dir)
    assert main(["--models-dir", str(models_dir), "models"]) == 0
    saved = capsys.readouterr().out.split("\n\n")[1].splitlines()
    assert saved[:2] == [f"Saved models in {models_dir}:", "  good: validation 50.0%"]
    for name, (_, reason) in BAD_SIDECARS.items():
        assert f"  {name}: unusable ({reason})" in saved
    assert (
        "  'has space': unusable ('has space' is not a model name: use letters, digits, _, . and - "
        "(starting with a letter or digit, at most 64 characters).)" in saved
    )
    assert len(saved) == 2 + len(BAD_SIDECARS) + 2
    assert main(["--models-dir", str(models_dir), "info", "good"]) == 0


def test_a_deeply_nested_sidecar_is_one_line_in_a_real_process(models_dir):
    (models_dir / "deep.keras").write_bytes(b"PK not opened")
    (models_dir / "deep.json").write_bytes(b"[" * 100_000)
    result = run_cnn("--models-dir", str(models_dir), "info", "deep")
    assert result.returncode == 2
    assert result.stderr == "error: deep: unusable (sidecar: nested more than 12 levels deep)\n"


# ---------------------------------------------------------------- archives


def zip_declaring(path: Path, members: dict[str, tuple[bytes, int]]) -> Path:
    """A small zip whose central directory declares `size` bytes for each member (content stays tiny)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, (content, _) in members.items():
            archive.writestr(name, content)
    data = bytearray(path.read_bytes())
    start = 0
    while (start := data.find(b"PK\x01\x02", start)) >= 0:
        name_length = int.from_bytes(data[start + 28 : start + 30], "little")
        name = data[start + 46 : start + 46 + name_length].decode()
        data[start + 24 : start + 28] = members[name][1].to_bytes(4, "little")  # uncompressed size
        start += 46
    path.write_bytes(bytes(data))
    path.with_suffix(".json").write_bytes(sidecar_bytes(sha256=sha256_of(path)))  # a sidecar that matches
    return path


def test_shipped_archives_pass_the_check():
    for path in SHIPPED.glob("*.keras"):
        check_archive(path)


def test_an_archive_that_would_expand_too_far_is_refused_before_keras_opens_it(models_dir, monkeypatch):
    import keras

    bomb = zip_declaring(
        models_dir / "bomb.keras",
        {"metadata.json": (b"{}", 2), "config.json": (b"{}", 2**30), "model.weights.h5": (b"", 0)},
    )
    assert bomb.stat().st_size < 1000 and zipfile.ZipFile(bomb).getinfo("config.json").file_size == 2**30

    def keras_must_not_open(*args, **kwargs):
        raise AssertionError("Keras opened the archive")

    monkeypatch.setattr(keras.models, "load_model", keras_must_not_open)
    with pytest.raises(ModelFileError) as caught:
        load_model("bomb", models_dir)
    assert str(caught.value) == ("bomb: unusable ('config.json' would expand to 1,024 MB, more than the 16 MB allowed)")


def test_an_archive_larger_than_the_limit_in_all_is_refused(tmp_path):
    members = {f"part{index}.bin": (b"", 100 * 2**20) for index in range(3)}
    with pytest.raises(ModelFileError, match=r"the archive would expand to 300 MB, more than the 256 MB allowed"):
        check_archive(zip_declaring(tmp_path / "big.keras", members))


def test_an_archive_with_too_many_members_is_refused_from_its_end_record(tmp_path, monkeypatch):
    crowded = zip_declaring(tmp_path / "crowded.keras", {f"{index}": (b"", 0) for index in range(500)})

    def never_parse_the_directory(*args, **kwargs):
        raise AssertionError("the central directory was parsed")

    monkeypatch.setattr(zipfile, "ZipFile", never_parse_the_directory)
    with pytest.raises(ModelFileError, match="the archive has 500 members, more than the 64 a Keras model has"):
        check_archive(crowded)


def test_the_end_record_is_found_behind_a_comment_and_a_non_zip_is_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "commented.zip", "w") as archive:
        for index in range(3):
            archive.writestr(f"m{index}", b"x")
        archive.comment = b"a comment moves the end record away from the end " * 6
    assert artifacts._zip_member_count(tmp_path / "commented.zip") == 3
    (tmp_path / "text.keras").write_bytes(b"just text")
    with pytest.raises(ModelFileError, match="not a Keras model archive"):
        check_archive(tmp_path / "text.keras")


# ---------------------------------------------------------------- the pair changes together


def build_tiny_model():
    """The smallest model load_model accepts (32x32x3 in, 10 classes out), freshly initialised: quick to save."""
    import keras

    return keras.Sequential(
        [keras.Input((32, 32, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10, activation="softmax")]
    )


@pytest.fixture(scope="module")
def tiny_model():
    return build_tiny_model()


@pytest.fixture(scope="module")
def other_model():
    """Another tiny model with other weights: its file (and sha256) differs from tiny_model's."""
    return build_tiny_model()


class SimulatedKill(BaseException):
    """Stands for SIGKILL: no `except Exception` or clean-up code runs, files stay as they are."""


class KilledWhileSaving:
    """A model whose save dies half-way through writing the archive."""

    def save(self, path):
        Path(path).write_bytes(b"PK\x03\x04 half an archive")
        raise SimulatedKill


@contextmanager
def killed_at_rename(number: int):
    """A save (or update) inside dies just before its rename `number` (0-3) happens, like SIGKILL."""
    real_replace, done = os.replace, []

    def replace(source, target):
        if len(done) == number:
            raise SimulatedKill
        done.append(target)
        real_replace(source, target)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "replace", replace)
        with pytest.raises(SimulatedKill):
            yield


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


OLD, NEW = 0.25, 0.75
# Where the kill lands -> which pair survives: before the pending pair is complete, the old one; after, the new.
KILL_POINTS = {
    "while the archive is written": (None, OLD),
    "before the first rename": (0, OLD),
    "after the model went pending": (1, OLD),
    "after the pair went pending": (2, NEW),
    "after the model was renamed": (3, NEW),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_a_save_killed_at_any_point_leaves_the_old_pair_or_the_new_one(point, models_dir, tiny_model, other_model):
    target = models_dir / "m.keras"
    save_model(tiny_model, target, {"metrics": {"val_accuracy": OLD}})
    rename, survivor = KILL_POINTS[point]
    if rename is None:
        with pytest.raises(SimulatedKill):
            save_model(KilledWhileSaving(), target, {"metrics": {"val_accuracy": NEW}})
    else:
        with killed_at_rename(rename):
            save_model(other_model, target, {"metrics": {"val_accuracy": NEW}})
    assert leftovers(models_dir)  # the kill left files behind, as a real one does
    # A reader that does not tidy (another process, mid-save) already sees one consistent pair...
    assert verified_sidecar(target).metrics.val_accuracy == (NEW if rename == 3 else OLD)
    # ...and once the folder is tidied, the survivor is in place and nothing else is left.
    assert [entry.describe() for entry in scan_models(models_dir)] == [f"m: validation {survivor:.1%}"]
    assert leftovers(models_dir) == []
    _, sidecar = load_model("m", models_dir)
    assert sidecar["metrics"]["val_accuracy"] == survivor


@pytest.mark.parametrize("rename", [1, 3])
def test_a_first_save_killed_leaves_no_model_or_the_new_one(rename, models_dir, tiny_model):
    with killed_at_rename(rename):
        save_model(tiny_model, models_dir / "m.keras", {"metrics": {"val_accuracy": NEW}})
    expected = [] if rename == 1 else ["m: validation 75.0%"]
    assert [entry.describe() for entry in scan_models(models_dir)] == expected
    assert leftovers(models_dir) == []


def test_temporary_files_of_a_running_save_are_left_alone(models_dir):
    stale = models_dir / ".tmp-m-123-abc.keras"
    stale.write_bytes(b"")
    with artifacts._folder_lock(models_dir, wait=True):  # a save in progress holds the lock
        tidy_models_folder(models_dir)
        assert stale.exists()
    tidy_models_folder(models_dir)
    assert not stale.exists()


def test_the_cli_tidies_the_models_folder_when_it_starts(models_dir, capsys):
    for name in (".tmp-fast-4242-x1y2.keras", ".tmp-fast-4242-x1y2.json", ".pending-fast.keras"):
        (models_dir / name).write_bytes(b"")  # what a save killed by an older version left
    assert main(["--models-dir", str(models_dir), "info", "missing"]) == 2
    assert leftovers(models_dir) == []


def test_a_save_refuses_an_invalid_sidecar_and_changes_nothing(models_dir, tiny_model):
    save_model(tiny_model, models_dir / "m.keras", {"metrics": {"val_accuracy": OLD}})
    before = {path.name: path.read_bytes() for path in models_dir.iterdir()}
    with pytest.raises(SidecarError, match="sidecar: metrics must be an object"):
        save_model(tiny_model, models_dir / "m.keras", {"metrics": "great"})
    assert {path.name: path.read_bytes() for path in models_dir.iterdir()} == before
    with pytest.raises(ModelFileError, match="is not a model name"):
        save_model(tiny_model, models_dir / "has space.keras", {})


def test_a_killed_sidecar_update_keeps_a_valid_sidecar(models_dir, tiny_model):
    save_model(tiny_model, models_dir / "m.keras", {"metrics": {"val_accuracy": OLD}})
    with killed_at_rename(0):
        update_sidecar(models_dir / "m.keras", metrics={"val_accuracy": NEW})
    assert read_sidecar(models_dir / "m.keras")["metrics"] == {"val_accuracy": OLD}
    with pytest.raises(SidecarError, match="metrics.val_accuracy must be a number from 0 to 1"):
        update_sidecar(models_dir / "m.keras", metrics={"val_accuracy": 75})
    assert scan_models(models_dir)[0].val_accuracy == OLD and leftovers(models_dir) == []


@pytest.mark.slow
def test_a_real_kill_between_the_two_renames_leaves_the_new_pair(models_dir, tiny_model):
    """The failure the issue saw (new .keras, old sidecar), with os._exit in a real process."""
    save_model(tiny_model, models_dir / "m.keras", {"metrics": {"val_accuracy": OLD}})
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from cnn.artifacts import save_model
        real_replace, done = os.replace, []
        def replace(source, target):
            if len(done) == 3:
                os._exit(9)
            done.append(target)
            real_replace(source, target)
        os.replace = replace
        from tests.test_artifacts import build_tiny_model
        save_model(build_tiny_model(), {str(models_dir / "m.keras")!r}, {{"metrics": {{"val_accuracy": {NEW}}}}})
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 9, result.stderr
    assert read_sidecar(models_dir / "m.keras")["metrics"]["val_accuracy"] == OLD  # the old sidecar is live
    _, sidecar = load_model("m", models_dir)
    assert sidecar["metrics"]["val_accuracy"] == NEW and leftovers(models_dir) == []
    assert read_sidecar(models_dir / "m.keras")["metrics"]["val_accuracy"] == NEW


class BrokenSave:
    """A model whose save writes half a file and then fails (disk full)."""

    def save(self, path):
        with open(path, "wb") as handle:
            handle.write(b"PK half a zip")
        raise OSError(28, "No space left on device")


def test_failing_save_keeps_the_old_model_and_sidecar(models_dir, tiny_model):
    import keras

    save_model(tiny_model, models_dir / "m.keras", {"model": "base", "metrics": {"val_accuracy": 0.5}})
    before = {path.name: path.read_bytes() for path in models_dir.iterdir()}
    with pytest.raises(OSError):
        save_model(BrokenSave(), models_dir / "m.keras", {"model": "base"})
    after = {path.name: path.read_bytes() for path in models_dir.iterdir()}
    assert after == before  # nothing changed, no temp file left behind
    loaded, sidecar = load_model("m", models_dir)
    assert isinstance(loaded, keras.Model) and sidecar["metrics"]["val_accuracy"] == 0.5


def test_loading_refuses_anything_outside_or_tampered(models_dir, tmp_path, tiny_model):
    save_model(tiny_model, models_dir / "good.keras", {"model": "base"})
    outside = tmp_path / "outside.keras"
    outside.write_bytes((models_dir / "good.keras").read_bytes())
    with pytest.raises(ModelFileError, match="not in the models folder"):
        resolve_model_path(str(outside), models_dir)
    with pytest.raises(ModelFileError, match="not in the models folder"):
        resolve_model_path("../outside.keras", models_dir)
    (models_dir / "link.keras").symlink_to(outside)
    with pytest.raises(ModelFileError, match="not in the models folder"):
        resolve_model_path("link", models_dir)
    with pytest.raises(ModelFileError, match=".h5"):
        resolve_model_path("old.h5", models_dir)
    (models_dir / "folder.keras").mkdir()
    with pytest.raises(ModelFileError, match="not a regular"):
        resolve_model_path("folder", models_dir)
    with pytest.raises(ModelFileError, match="not from"):
        resolve_model_path("hf://someone/model.keras", models_dir)
    with open(models_dir / "good.keras", "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(ModelFileError, match="sha256"):
        load_model("good", models_dir)
    (models_dir / "nosidecar.keras").write_bytes(b"x")
    with pytest.raises(ModelFileError, match="no sidecar"):
        load_model("nosidecar", models_dir)


def test_a_model_with_a_lambda_layer_is_refused(models_dir):
    """Refused by Keras's safe mode itself: the same file loads when safe mode is off, so nothing else failed."""
    import keras

    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Dense(10)(keras.layers.Flatten()(keras.layers.Lambda(lambda x: x * 2)(inputs)))
    save_model(keras.Model(inputs, outputs), models_dir / "lam.keras", {"model": "lambda"})
    with pytest.raises(ModelFileError, match=r"^lam\.keras holds Python code \(a Lambda layer.*safe mode refuses"):
        load_model("lam", models_dir)
    unsafe = keras.models.load_model(models_dir / "lam.keras", compile=False, safe_mode=False)
    assert any(isinstance(layer, keras.layers.Lambda) for layer in unsafe.layers)
    assert read_sidecar(models_dir / "lam.keras")["model"] == "lambda"


# ---------------------------------------------------------------- the pages


@pytest.fixture
def mixed_models(models_dir, monkeypatch, tmp_path):
    """A usable untrained `base`, every bad sidecar and two bad names; the bundled sample as test data."""
    from cnn.zoo import ZOO

    save_model(ZOO["base"].build(), models_dir / "good.keras", {"model": "base", "metrics": {"val_accuracy": 0.6}})
    write_bad_models(models_dir)
    (tmp_path / "no-data").mkdir()
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path / "no-data"))
    return models_dir


def run_page(path: str):
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(str(ROOT / path), default_timeout=180).run()
    assert not app.exception, [exception.value for exception in app.exception]
    return app


@pytest.mark.slow
def test_home_lists_the_unusable_models_with_their_reasons(mixed_models):
    app = run_page("streamlit_app.py")
    models, unusable = app.dataframe[0].value, app.dataframe[1].value
    assert list(models["Model"]) == ["good"] and models["Validation"][0] == "60.0%"
    reasons = dict(zip(unusable["Model"], unusable["Why it cannot be used"]))
    assert {name: reasons[name] for name in BAD_SIDECARS} == {
        name: reason for name, (_, reason) in BAD_SIDECARS.items()
    }
    assert reasons["'has space'"].startswith("'has space' is not a model name")
    assert any("cannot be used" in warning.value for warning in app.warning)


@pytest.mark.slow
@pytest.mark.parametrize(
    "page, key",
    [("pages/predict.py", "predict_model"), ("pages/evaluate.py", "eval_model"), ("pages/inspect.py", "inspect_model")],
)
def test_model_pages_offer_only_the_usable_model_and_name_the_others(page, key, mixed_models):
    import streamlit as st

    st.cache_resource.clear()
    app = run_page(page)
    picker = app.selectbox(key=key)
    assert picker.value == "good" and len(picker.options) == 1
    note = next(caption.value for caption in app.caption if caption.value.startswith("Cannot be used: "))
    assert "metrics\\_great\\: unusable (sidecar\\: metrics must be an object" in note
    assert not app.error
    if page == "pages/inspect.py":  # the good model loads: its layer table is shown
        assert "conv1" in set(app.dataframe[0].value["Layer"])
    if page == "pages/evaluate.py":
        assert app.metric[0].label == "Accuracy, bundled sample (exact test images 0-999)"


def test_model_loads_in_one_process_take_turns(models_dir, tiny_model, other_model, monkeypatch):
    """Keras deserialization is not thread-safe (a 30-session server died of heap corruption): two
    sessions loading two models at once must load one after the other."""
    import threading
    import time

    from cnn import artifacts

    saved = {
        "one": (tiny_model, save_model(tiny_model, models_dir / "one.keras", {"model": "tiny"})),
        "two": (other_model, save_model(other_model, models_dir / "two.keras", {"model": "tiny"})),
    }
    real_load, inside, most = artifacts._keras_load, [0], [0]
    loaded, raised = {}, {}

    def watched_load(path):
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        time.sleep(0.3)  # long enough for the other thread to arrive while this load runs
        try:
            return real_load(path)
        finally:
            inside[0] -= 1

    def load(name):  # a thread's result and exception would otherwise be lost
        try:
            loaded[name] = artifacts.load_model(name, models_dir)
        except BaseException as error:
            raised[name] = error

    monkeypatch.setattr(artifacts, "_keras_load", watched_load)
    threads = [threading.Thread(target=load, args=(name,)) for name in saved]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1
    assert not raised, raised
    assert set(loaded) == set(saved)
    for name, (model, sidecar) in loaded.items():
        original, written = saved[name]
        assert sidecar["file"] == f"{name}.keras" and sidecar["sha256"] == written["sha256"]
        for weight, original_weight in zip(model.get_weights(), original.get_weights(), strict=True):
            np.testing.assert_array_equal(weight, original_weight)
