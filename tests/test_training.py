"""cnn.training: the settings, fit with its history and checkpoints, stop and resume, the data pipeline's
augmentation, lookahead and the whitening bias. (A killed worker's resume: test_jobs; corrupt run files: test_runs.)"""

import json

import numpy as np
import pytest

from cnn.data import load_cifar10
from cnn.errors import UserError
from cnn.runs import RunFiles, read_history, request_stop
from cnn.training import TrainConfig, train


def test_config_refuses_bad_settings():
    with pytest.raises(UserError, match="epochs must be at least 1"):
        TrainConfig(model="base", epochs=0)
    with pytest.raises(UserError, match="learning rate"):
        TrainConfig(model="base", learning_rate=float("nan"))
    with pytest.raises(UserError, match="Unknown model"):
        TrainConfig.for_model("resnet1000")
    with pytest.raises(UserError, match="Invalid training settings: flip must be one of random, alternate"):
        TrainConfig(model="base", flip="sideways")
    for bad in (-1, 1.5, "3"):
        with pytest.raises(UserError, match="whitening-bias epochs must be a whole number"):
            TrainConfig(model="fast", whiten_bias_epochs=bad)


def test_config_round_trips_through_json_and_old_sidecars_load():
    config = TrainConfig.for_model("fast", flip="alternate")
    assert TrainConfig(**json.loads(json.dumps(config.to_dict()))) == config
    old = {key: value for key, value in config.to_dict().items() if key != "flip"}  # saved before the flip setting
    assert TrainConfig(**old).flip == "random"


def tiny_config(**overrides):
    settings = dict(epochs=2, batch_size=32, mixed_precision=False, val_size=20)
    settings.update(overrides)
    return TrainConfig.for_model("base", **settings)


def test_train_records_history_and_checkpoint(synthetic_cifar, tmp_path):
    data = load_cifar10(synthetic_cifar, val_size=20)
    result = train(tiny_config(), data, tmp_path / "run", verbose=0)
    history = read_history(RunFiles(tmp_path / "run").history)
    assert [row["epoch"] for row in history] == [1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history[0])
    assert result.epochs_done == 2 and not result.stopped_early
    assert 0.0 <= result.val_accuracy <= 1.0
    # Training is done but nothing is saved yet: the caller that saves records the final state.
    assert json.loads((tmp_path / "run" / "status.json").read_text())["state"] == "saving"


@pytest.mark.slow  # trains three short runs
def test_stop_flag_then_resume_continues_the_same_history(synthetic_cifar, tmp_path):
    data = load_cifar10(synthetic_cifar, val_size=20)
    run = tmp_path / "run"
    run.mkdir()
    request_stop(run)  # a stale STOP from before the start must not stop the new run
    first = train(tiny_config(epochs=3), data, run, verbose=0)
    assert first.epochs_done == 3
    # Now stop a run from its first batch (a Stop pressed while its worker started up, which keeps the
    # request): the epoch is kept (partial) with its checkpoint.
    run2 = tmp_path / "run2"
    run2.mkdir()
    request_stop(run2)
    stopped = train(tiny_config(epochs=3), data, run2, verbose=0, clear_stop=False)
    assert stopped.stopped_early and stopped.epochs_done == 1
    resumed = train(tiny_config(epochs=3), data, run2, resume=True, verbose=0)
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3] and not resumed.stopped_early
    assert not any(row.get("partial_batches") for row in resumed.history)


@pytest.mark.slow  # trains three short runs
def test_stop_in_the_last_epoch_then_resume_finishes_the_run(synthetic_cifar, tmp_path):
    """Issue 14: a Stop in the last epoch left "2 of 2 finished" with a partial epoch that Resume never redid."""
    data = load_cifar10(synthetic_cifar, val_size=20)
    run = tmp_path / "run"
    train(tiny_config(epochs=1, batch_size=8), data, run, verbose=0)
    # Continued to 2 epochs with a Stop already requested: it stops in the first batch of the last epoch.
    request_stop(run)
    stopped = train(tiny_config(epochs=2, batch_size=8), data, run, resume=True, verbose=0, clear_stop=False)
    assert stopped.stopped_early and stopped.history[-1]["epoch"] == 2 and stopped.history[-1]["partial_batches"]
    assert stopped.history[-1]["batches_per_epoch"] > stopped.history[-1]["partial_batches"], "for the charts"
    resumed = train(tiny_config(epochs=2, batch_size=8), data, run, resume=True, verbose=0)
    assert not resumed.stopped_early, "Resume must finish the run"
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    assert not any(row.get("partial_batches") for row in resumed.history)


def test_bf16_is_chosen_only_on_a_cpu_with_native_bf16(tmp_path):
    from cnn.hardware import cpu_has_native_bf16

    cpuinfo = tmp_path / "cpuinfo"
    for flags, native in (("fpu avx2 avx512f", False), ("fpu avx512f avx512_bf16", True), ("amx_bf16 amx_tile", True)):
        cpuinfo.write_text(f"processor\t: 0\nmodel name\t: x\nflags\t\t: {flags}\n")
        assert cpu_has_native_bf16(cpuinfo) is native
    assert cpu_has_native_bf16(tmp_path / "missing") is False


def test_jpeg_augmentation_changes_pixels_a_little(synthetic_cifar):
    from cnn.input_pipeline import training_batches

    split = load_cifar10(synthetic_cifar, val_size=20).train
    config = TrainConfig.for_model("base", batch_size=len(split), jpeg_augment=1.0, val_size=20)
    batch, _ = next(iter(training_batches(split.images, split.labels, config)))
    batch = np.asarray(batch)
    originals = (
        np.stack(
            [split.images[np.argmin(np.abs(split.images / 255.0 - image).mean(axis=(1, 2, 3)))] for image in batch[:10]]
        )
        / 255.0
    )
    difference = np.abs(batch[:10] - originals).mean()
    assert 0.001 < difference < 0.08  # re-encoded (lossy), yet the same pictures
    with pytest.raises(UserError, match="JPEG"):
        TrainConfig(model="base", jpeg_augment=1.5)
    with pytest.raises(UserError, match="JPEG quality range"):
        TrainConfig(model="base", jpeg_quality=(90, 60))
    for bad in (75, (60,), ("60", "90"), (0, 90)):
        with pytest.raises(UserError, match="JPEG quality range"):
            TrainConfig(model="base", jpeg_quality=bad)
    assert TrainConfig(model="base", jpeg_quality=[70, 80]).jpeg_quality == (70, 80)  # as read from JSON


def test_alternating_flip_mirrors_each_image_every_other_epoch():
    from cnn.input_pipeline import flip_planned_batches, training_batches

    images = np.random.default_rng(3).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(8)  # one class per image: a row's label names its image, even re-encoded as JPEG

    def flips_by_epoch(batch_size, initial_epoch=0, epochs=4, **settings):
        """The pipeline's flip decisions, one row per epoch, one column per image."""
        config = TrainConfig(model="base", batch_size=batch_size, augment=True, flip="alternate", **settings)
        rows = []
        for _, y, flip in flip_planned_batches(images, labels, config, initial_epoch):
            rows += zip(np.argmax(y, axis=1).tolist(), np.asarray(flip).tolist())
            if len(rows) >= 8 * epochs:
                break
        by_epoch = [dict(rows[8 * epoch : 8 * epoch + 8]) for epoch in range(epochs)]
        assert all(sorted(seen) == list(range(8)) for seen in by_epoch)  # each epoch shows every image once
        return np.array([[seen[image] for image in range(8)] for seen in by_epoch])

    flips = flips_by_epoch(8)
    assert 0 < flips[0].sum() < 8  # each image starts from its own random bit
    assert (flips[1:] != flips[:-1]).all()  # mirrored every other epoch, never the same way twice in a row
    np.testing.assert_array_equal(flips_by_epoch(3, jpeg_augment=1.0), flips)  # batches straddle epochs; JPEG
    np.testing.assert_array_equal(flips_by_epoch(8, initial_epoch=1), ~flips)  # a resumed run keeps the phase
    # The training batches (shifted too) are mirrored as planned.
    config = TrainConfig(model="base", batch_size=8, augment=True, flip="alternate")
    x, y = next(iter(training_batches(images, labels, config)))
    for row, label in zip(np.asarray(x), np.argmax(y, axis=1)):
        assert _mirrored(np.rint(row * 255), images[label]) == flips[0][label]


def _mirrored(augmented, image) -> bool:
    """Whether `augmented` is `image` mirrored (True) or not (False), whatever its shift of up to 2 px."""
    from cnn.augment import MAX_SHIFT

    size = image.shape[0] - 2 * MAX_SHIFT
    centre = augmented[MAX_SHIFT : MAX_SHIFT + size, MAX_SHIFT : MAX_SHIFT + size]  # never from the padding
    windows = range(2 * MAX_SHIFT + 1)
    matches = [
        any(np.array_equal(centre, view[top : top + size, left : left + size]) for top in windows for left in windows)
        for view in (image, image[:, ::-1])
    ]
    assert sum(matches) == 1, "the augmented image is neither the image nor its mirror, shifted"
    return matches[1]


@pytest.mark.slow  # trains two short runs
def test_lookahead_setting_averages_the_weights(synthetic_cifar, tmp_path):
    """The setting reaches the callback (whose arithmetic tests/test_callbacks.py checks by hand)."""
    data = load_cifar10(synthetic_cifar, val_size=20)  # 180 images, batch 32: 6 steps an epoch
    plain = train(tiny_config(epochs=3), data, tmp_path / "plain", verbose=0)
    averaged = train(tiny_config(epochs=3, lookahead=True), data, tmp_path / "slow", verbose=0)
    assert averaged.epochs_done == 3
    # Same seed, same batches: only the averaging differs.
    moved = [np.abs(a - b).max() for a, b in zip(plain.model.get_weights(), averaged.model.get_weights())]
    assert max(moved) > 1e-4


@pytest.mark.slow  # trains the full-size fast model twice
def test_whitening_bias_is_held_from_its_last_epoch_on(synthetic_cifar, tmp_path):
    data = load_cifar10(synthetic_cifar, val_size=20)
    settings = dict(epochs=2, batch_size=32, mixed_precision=False, val_size=20, jpeg_augment=0.0, augment=False)
    trained = train(TrainConfig.for_model("fast", whiten_bias_epochs=None, **settings), data, tmp_path / "a", verbose=0)
    held = train(TrainConfig.for_model("fast", whiten_bias_epochs=0, **settings), data, tmp_path / "b", verbose=0)

    def whiten_bias(model):
        return np.array(model.get_layer("fast").get_layer("whiten_bias").bias)

    assert np.abs(whiten_bias(trained.model)).max() > 1e-5  # it learns when allowed to...
    assert np.array_equal(whiten_bias(held.model), np.zeros(24, np.float32))  # ...and not at all from epoch 0
    assert TrainConfig.for_model("fast").whiten_bias_epochs == 3  # the shipped recipe holds it after 3 epochs
    with pytest.raises(UserError, match="no whitening layer"):
        train(tiny_config(whiten_bias_epochs=1), data, tmp_path / "c", verbose=0)


@pytest.mark.slow  # two fresh processes, each importing TensorFlow
def test_a_fast_run_resumes_in_a_fresh_process(synthetic_cifar, tmp_path):
    """A resume runs in a new worker process, where nothing has built a model yet: the checkpoint's own layers
    (the fast network's whitening, fused batch norm and test-time views) must still load there."""
    from cnn.artifacts import read_sidecar
    from tests.helpers_cli import run_cnn, train_argv

    out = tmp_path / "models" / "fast_tiny.keras"
    options = ("--batch-size", "32", "--out", str(out))
    first = run_cnn(*train_argv(synthetic_cifar, tmp_path / "run", "--epochs", "1", *options, model="fast"))
    assert first.returncode == 0, first.stderr[-2000:]
    resumed = run_cnn(
        *train_argv(synthetic_cifar, tmp_path / "run", "--epochs", "2", "--resume", *options, model="fast")
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert [row["epoch"] for row in read_sidecar(out)["history"]] == [1, 2]
