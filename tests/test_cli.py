"""The command line end to end: train -> save -> info -> evaluate -> predict, and its refusals."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from cnn.__main__ import main
from cnn.artifacts import read_sidecar
from cnn.data import load_cifar10
from cnn.zoo import ZOO
from tests.helpers_cli import run_cnn, train_argv
from tests.helpers_http import ScriptedServer, allow_only_the_port_of


def run_cli(capsys, *argv):
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_cifar):
    """A `base` model trained by the CLI on the synthetic data, in its own models folder."""
    folder = tmp_path_factory.mktemp("cli")
    models = folder / "models"
    options = ("--epochs", "2", "--batch-size", "16", "--out", str(models / "tiny.keras"))
    assert main(["--models-dir", str(models), *train_argv(synthetic_cifar, folder / "run", *options)]) == 0
    return models


@pytest.fixture
def cli(trained, capsys):
    """The command line on the trained model's folder: cli(*argv) -> (status, stdout, stderr)."""
    return lambda *argv: run_cli(capsys, "--models-dir", str(trained), *argv)


def png_bytes(colour, size=(40, 30)):
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def test_models_lists_the_whole_zoo_then_the_saved_models(trained, cli):
    status, out, _ = cli("models")
    assert status == 0
    zoo, saved = out.split("\n\n")
    names = [line.split()[0] for line in zoo.splitlines()]
    assert names == list(ZOO)
    assert "1,568" not in zoo and "," in zoo  # parameter counts are printed with separators
    assert saved.splitlines()[0] == f"Saved models in {trained}:"
    assert any(line.startswith("  tiny: validation ") for line in saved.splitlines())


def test_train_writes_model_and_sidecar(trained, synthetic_cifar):
    sidecar = read_sidecar(trained / "tiny.keras")
    assert sidecar["model"] == "base" and sidecar["epochs"] == 2
    assert [row["epoch"] for row in sidecar["history"]] == [1, 2]
    assert sidecar["config"]["batch_size"] == 16 and "train" in sidecar["command"]
    assert len(sidecar["sha256"]) == 64 and sidecar["metrics"]["val_images"] == 20
    # the data by its content, never by a path of the machine that trained it
    assert sidecar["data"]["source"] == load_cifar10(synthetic_cifar, val_size=20).identity
    assert str(synthetic_cifar) not in json.dumps(sidecar["data"])


def test_info_and_evaluate_json(synthetic_cifar, cli):
    status, out, _ = cli("info", "tiny.keras")
    assert status == 0 and "verified" in out
    status, out, _ = cli("evaluate", "tiny", "--data-dir", str(synthetic_cifar), "--indices", "0:30", "--json")
    result = json.loads(out)
    assert status == 0 and result["n"] == 30 and 0 <= result["accuracy"] <= 1
    assert np.array(result["confusion_matrix"]).shape == (10, 10) and np.sum(result["confusion_matrix"]) == 30
    assert "macro avg" in result["class_metrics"]


def test_train_takes_the_augmentation_settings_and_refuses_bad_ones(synthetic_cifar, tmp_path, capsys):
    models = tmp_path / "models"
    augmentation = ("--jpeg-augment", "1", "--jpeg-quality", "70:80", "--augment", "--flip", "alternate")
    argv = train_argv(synthetic_cifar, tmp_path / "run", "--epochs", "1", "--batch-size", "32", *augmentation)
    status, _, err = run_cli(capsys, "--models-dir", str(models), *argv)
    assert status == 0, err
    config = read_sidecar(models / "base.keras")["config"]
    assert config["jpeg_augment"] == 1.0 and config["jpeg_quality"] == [70, 80]
    assert config["augment"] is True and config["flip"] == "alternate"
    status, _, err = run_cli(capsys, "--models-dir", str(models), "train", "--model", "base", "--jpeg-quality", "80:70")
    assert status == 2 and "JPEG quality range" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_info:
        main(["--models-dir", str(models), "train", "--model", "base", "--flip", "sideways"])
    assert exit_info.value.code == 2 and "alternate" in capsys.readouterr().err


def test_evaluate_as_jpeg_reencodes_the_split_and_is_never_recorded(trained, synthetic_cifar, cli, capsys):
    on_the_data = ("evaluate", "tiny", "--data-dir", str(synthetic_cifar), "--as-jpeg", "75")
    status, out, err = cli(*on_the_data, "--indices", "0:20", "--json")
    assert status == 0, err
    result = json.loads(out)
    assert status == 0 and "JPEG q75" in result["split"] and result["n"] == 20
    status, _, err = cli(*on_the_data, "--record")
    assert status == 2 and "--record" in err
    assert "test_clean_accuracy" not in read_sidecar(trained / "tiny.keras").get("metrics", {})
    with pytest.raises(SystemExit) as exit_info:
        main(["--models-dir", str(trained), "evaluate", "tiny", "--as-jpeg", "101"])
    assert exit_info.value.code == 2 and "1-100" in capsys.readouterr().err


def test_evaluate_record_stores_test_figures(trained, synthetic_cifar, cli):
    status, _, _ = cli("evaluate", "tiny", "--data-dir", str(synthetic_cifar), "--record")
    metrics = read_sidecar(trained / "tiny.keras")["metrics"]
    assert status == 0 and metrics["test_clean_images"] == 50 and "test_clean_accuracy" in metrics
    status, _, _ = cli("info", "tiny")
    assert status == 0  # updating the sidecar keeps the sha256 valid


def test_latency_is_measured_and_recorded_in_the_sidecar(trained, cli):
    status, out, _ = cli("latency", "tiny", "--runs", "5", "--record")
    metrics = read_sidecar(trained / "tiny.keras")["metrics"]
    assert status == 0 and "one image p50" in out and "over 5 runs" in out
    assert 0 < metrics["latency_p50_ms"] <= metrics["latency_p95_ms"]
    assert "load average" in metrics["latency_measured_on"] and "val_accuracy" in metrics  # nothing else lost
    status, _, _ = cli("info", "tiny")
    assert status == 0


def test_predict_keeps_going_past_bad_sources(tmp_path, cli):
    good = tmp_path / "red.png"
    good.write_bytes(png_bytes((250, 10, 10)))
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is text, not a picture")
    status, out, _ = cli(
        "predict",
        "tiny",
        str(good),
        str(bad),
        "file:///etc/passwd",
        "ftp://example.com/x.png",
        str(tmp_path / "missing.png"),
        "--json",
        "--top",
        "3",
    )
    results = json.loads(out)
    assert status == 1
    assert [result["source"] for result in results][0] == str(good)
    assert len(results[0]["top"]) == 3 and results[0]["top"][0]["probability"] >= results[0]["top"][1]["probability"]
    assert "not a supported image" in results[1]["error"]
    assert "file" in results[2]["error"] and "ftp" in results[3]["error"]
    assert "No such image file" in results[4]["error"]


def test_predict_refuses_private_urls(cli, monkeypatch):
    # A real server on loopback, its port made a web port: only the address
    # rule can refuse it, and the server must see no connection at all.
    with ScriptedServer() as server:
        allow_only_the_port_of(server, monkeypatch)
        status, out, _ = cli("predict", "tiny", server.url("/png"), "--json")
        assert server.connections == []
    (result,) = json.loads(out)
    assert status == 1 and "not allowed: it points to a private, local" in result["error"]


def test_bad_model_files_get_one_plain_line(trained, cli, capsys):
    # A valid model and sidecar just outside the models folder: only the containment rule refuses it.
    escape = trained.parent / "escape.keras"
    escape.write_bytes((trained / "tiny.keras").read_bytes())
    escape.with_suffix(".json").write_bytes((trained / "tiny.json").read_bytes())
    try:
        assert run_cli(capsys, "--models-dir", str(trained.parent), "info", "escape")[0] == 0  # it is loadable
        status, _, err = cli("info", "../escape.keras")
    finally:
        escape.unlink()
        escape.with_suffix(".json").unlink()
    assert status == 2 and err.startswith("error: '../escape.keras' is not in the models folder")
    assert err.count("\n") == 1 and "Traceback" not in err
    status, _, err = cli("evaluate", "nothing-here")
    assert status == 2 and "No model file" in err


def test_bad_arguments_exit_with_usage_not_traceback():
    result = run_cnn("train", "--model", "base", "--epochs", "-3")
    assert result.returncode == 2 and "must be at least 1" in result.stderr and "Traceback" not in result.stderr
    result = run_cnn("train", "--model", "nope", "--data-dir", "/nowhere")
    assert result.returncode == 2 and "Unknown model" in result.stderr and "Traceback" not in result.stderr


def test_preprocess_agrees_across_training_evaluation_and_prediction(trained, synthetic_cifar):
    """The same image reaches the model identically through the three paths."""
    import tensorflow as tf

    from cnn.artifacts import load_model
    from cnn.data import load_cifar10
    from cnn.images import decode_image
    from cnn.inference import Predictor, predict_proba
    from cnn.input_pipeline import training_batches
    from cnn.training import TrainConfig

    model, _ = load_model("tiny", trained)
    split = load_cifar10(synthetic_cifar, val_size=20).train
    config = TrainConfig.for_model("base", batch_size=len(split), augment=False, val_size=20)
    batch, _ = next(iter(training_batches(split.images, split.labels, config)))
    # Training shuffles: find each training input's source image by its content.
    training_inputs = np.asarray(batch)
    order = [
        int(np.flatnonzero((split.images == np.rint(x * 255).astype(np.uint8)).all(axis=(1, 2, 3)))[0])
        for x in training_inputs[:5]
    ]
    from_training = np.asarray(model(tf.constant(training_inputs[:5]), training=False))
    from_evaluation = predict_proba(model, split.images[order])
    encoded = []
    for index in order:
        buffer = io.BytesIO()
        Image.fromarray(split.images[index]).save(buffer, "PNG")
        encoded.append(decode_image(buffer.getvalue()))
    from_prediction = Predictor(model).predict_proba(encoded)
    np.testing.assert_allclose(from_training, from_evaluation, atol=1e-6)
    np.testing.assert_allclose(from_prediction, from_evaluation, atol=1e-6)
