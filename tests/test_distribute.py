"""cnn.distribute: `train --strategy mirrored|multiworker` with tf.distribute.

The slow tests run TensorFlow in fresh processes, since logical CPU devices and
multi-worker collectives can only be set up before TensorFlow runs anything:
`mirrored` on two logical CPU devices (this file run as a script), and two
`multiworker` workers on localhost, each a `python -m cnn train` with its own
TF_CONFIG, as on a cluster.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script (the mirrored checks), without conftest
    sys.path.insert(0, str(ROOT))

from cnn.__main__ import main  # noqa: E402
from cnn.distribute import ClusterTask, check_batch_split, read_tf_config  # noqa: E402
from cnn.errors import UserError  # noqa: E402
from cnn.training import TrainConfig  # noqa: E402
from cnn.zoo import ZOO  # noqa: E402
from tests.helpers_cli import cnn_command, train_argv  # noqa: E402

# Each slow test takes 15-25 CPU-seconds, but minutes on a 2-core machine loaded 8x over (nice 19): a run
# past this has hung.
SUBPROCESS_TIMEOUT_S = 900
TINY = dict(val_size=20, mixed_precision=False)  # the synthetic set: 180 training images, 20 validate


def cluster(addresses: list[str], job: str = "worker", index: int = 0, chief: list[str] | None = None) -> str:
    """A TF_CONFIG value."""
    jobs = {"worker": addresses} | ({"chief": chief} if chief else {})
    return json.dumps({"cluster": jobs, "task": {"type": job, "index": index}})


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on localhost (held together while they are picked)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("localhost", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


# ---------------------------------------------------------------- settings, checked without TensorFlow


@pytest.mark.parametrize(
    "value, message",
    [
        (None, "TF_CONFIG environment variable, which is not set"),
        ("{not json", "TF_CONFIG is not valid JSON"),
        ('{"task": {"type": "worker", "index": 0}}', 'TF_CONFIG needs a "cluster" and a "task" object'),
        (
            json.dumps({"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "worker", "index": 0}}),
            "jobs MultiWorkerMirroredStrategy does not train with (ps)",
        ),
        (cluster(["localhost"]), "'worker' job must be a list of \"host:port\" addresses"),
        (cluster(["a:1", "b:2"], index=2), "task index 2 is not 0-1"),
        (cluster(["a:1", "b:2"], index=True), "task index True is not 0-1"),
        (cluster(["a:1"], job="chief"), "task type 'chief' is not one of the cluster's jobs (worker)"),
        (cluster(["a:1"], chief=["b:2", "c:3"]), "at most one chief"),
    ],
)
def test_tf_config_mistakes_get_one_plain_message(value, message):
    with pytest.raises(UserError, match=re.escape(message)):
        read_tf_config({} if value is None else {"TF_CONFIG": value})


def test_tf_config_gives_this_processes_place_in_the_cluster():
    assert read_tf_config({"TF_CONFIG": cluster(["a:1", "b:2"], index=1)}) == ClusterTask("worker", 1, 2)
    with_chief = cluster(["a:1", "b:2"], job="chief", chief=["c:3"])
    assert read_tf_config({"TF_CONFIG": with_chief}) == ClusterTask("chief", 0, 3)


def test_the_chief_is_the_chief_task_else_the_first_worker():
    from cnn.distribute import is_chief_task

    assert is_chief_task({"TF_CONFIG": cluster(["a:1", "b:2"], index=0)})
    assert not is_chief_task({"TF_CONFIG": cluster(["a:1", "b:2"], index=1)})
    with_chief = json.dumps({"cluster": {"chief": ["c:3"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}})
    assert not is_chief_task({"TF_CONFIG": with_chief})
    assert is_chief_task({"TF_CONFIG": with_chief.replace('"type": "worker"', '"type": "chief"')})


def test_strategy_settings_are_checked_and_the_shipped_recipes_use_one_device():
    assert all(TrainConfig.for_model(name).strategy is None for name in ZOO)
    config = TrainConfig.for_model("base", strategy="mirrored", cpu_devices=2)
    assert TrainConfig(**json.loads(json.dumps(config.to_dict()))) == config  # the sidecar keeps it
    for settings, message in [
        (dict(strategy="horovod"), "strategy must be one of mirrored, multiworker, not 'horovod'"),
        (dict(cpu_devices=2), "CPU devices apply to the mirrored strategy only"),
        (dict(strategy="multiworker", cpu_devices=2), "CPU devices apply to the mirrored strategy only"),
        (dict(strategy="mirrored", cpu_devices=0), "CPU devices must be a whole number 1-16, not 0"),
        (dict(strategy="mirrored", cpu_devices=17), "CPU devices must be a whole number 1-16, not 17"),
    ]:
        with pytest.raises(UserError, match=re.escape(message)):
            TrainConfig(model="base", **settings)


def test_a_global_batch_must_split_evenly_over_the_replicas():
    check_batch_split(32, 2)
    check_batch_split(1024, 8)
    with pytest.raises(UserError, match="batch size 32 does not split evenly over 3 replicas"):
        check_batch_split(32, 3)


def test_cli_refuses_multiworker_without_tf_config_before_writing_anything(
    synthetic_cifar, tmp_path, capsys, monkeypatch
):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    multiworker = train_argv(synthetic_cifar, tmp_path / "run", "--strategy", "multiworker")
    status = main(["--models-dir", str(tmp_path / "models"), *multiworker])
    err = capsys.readouterr().err
    assert status == 2 and "TF_CONFIG environment variable, which is not set" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "models").exists()
    status = main(["train", "--model", "base", "--cpu-devices", "2"])
    assert status == 2 and "CPU devices apply to the mirrored strategy only" in capsys.readouterr().err


class ReachedTraining(Exception):
    """Raised in place of training: the worker got past every lock."""


def test_a_worker_that_is_not_the_chief_takes_no_lock_and_writes_nothing(synthetic_cifar, tmp_path, monkeypatch):
    import cnn.training
    from cnn.runs import acquire_locks

    run, out = tmp_path / "run", tmp_path / "models" / "pair.keras"
    monkeypatch.setenv("TF_CONFIG", cluster(["localhost:1", "localhost:2"], index=1))

    def train_in_place_of_tensorflow(config, data, run_dir, **options):
        raise ReachedTraining(config.strategy, Path(run_dir))

    monkeypatch.setattr(cnn.training, "train", train_in_place_of_tensorflow)
    with acquire_locks(run, out):  # the chief's: the run folder and model file are in use
        before = sorted(path.name for path in run.iterdir())
        with pytest.raises(ReachedTraining) as reached:
            main(train_argv(synthetic_cifar, run, "--strategy", "multiworker", "--out", str(out)))
        assert reached.value.args == ("multiworker", run)  # train() itself swaps in a temporary folder
        assert sorted(path.name for path in run.iterdir()) == before


# ---------------------------------------------------------------- mirrored, on two logical CPU devices


def mirrored_steps(data_dir: str, out: str) -> dict:
    """Train `base` under MirroredStrategy on 2 logical CPU devices and on one device (in a fresh process).

    With a subset of exactly one batch, every step sees the same 32 images whatever
    their order, so the two placements must take the same steps: same images,
    averaged gradient, unchanged learning rate. SGD shows any change of the
    gradient's scale, which Adam would hide; lookahead's averaging, on top, shows
    that its get_weights/set_weights act on the mirrored variables as on plain ones.
    """
    from cnn import training
    from cnn.distribute import place, use_cpu_devices
    from cnn.errors import TrainingError

    built_on = []  # the replicas each trained model's variables were made for
    start = training.start_or_resume

    def recording_start(*args, **kwargs):
        model, *rest = start(*args, **kwargs)
        built_on.append(model.distribute_strategy.num_replicas_in_sync)
        return (model, *rest)

    training.start_or_resume = recording_start
    run = tiny_runs(data_dir, out, subset=32, batch_size=32, epochs=5, optimizer="sgd_nesterov", learning_rate=0.05)
    two = run("two", **MIRRORED)  # first: the devices are set up before TensorFlow runs anything
    averaged_two = run("averaged-two", lookahead=True, **MIRRORED)
    resumed = run("two", resume=True, epochs=6, **MIRRORED)
    averaged_one = run("averaged-one", lookahead=True)
    refusals = []
    for late_start in (lambda: use_cpu_devices(3), lambda: place("multiworker")):
        try:
            late_start()
        except TrainingError as error:
            refusals.append(str(error))

    def largest_difference(a, b):
        return float(max(np.abs(x - y).max() for x, y in zip(a.model.get_weights(), b.model.get_weights())))

    return {
        "replicas": [two.replicas, averaged_one.replicas],
        "built_on": built_on,
        "averaged_two_vs_one": largest_difference(averaged_two, averaged_one),
        "averaging_moved": largest_difference(averaged_two, two),
        "resumed_epochs": [row["epoch"] for row in resumed.history],
        "refusals": refusals,
    }


def mirrored_fast(data_dir: str, out: str) -> dict:
    """Train `fast` under MirroredStrategy on 2 logical CPU devices, its whitening bias held from epoch 0."""
    run = tiny_runs(data_dir, out, subset=32, batch_size=32, epochs=1, augment=False, jpeg_augment=0.0)
    held = run("held", model="fast", whiten_bias_epochs=0, **MIRRORED)
    bias = held.model.get_layer("fast").get_layer("whiten_bias").get_weights()[0]
    return {"replicas": held.replicas, "whiten_bias": np.abs(bias).tolist()}


MIRRORED = dict(strategy="mirrored", cpu_devices=2)
FRESH_PROCESS_CHECKS = {"mirrored-steps": mirrored_steps, "mirrored-fast": mirrored_fast}


def tiny_runs(data_dir: str, out: str, **settings):
    """`run(folder, model="base", resume=False, **overrides)`: a quiet training on the synthetic set."""
    from cnn.data import load_cifar10
    from cnn.training import train

    data = load_cifar10(data_dir, val_size=20)

    def run(folder, model="base", resume=False, **overrides):
        config = TrainConfig.for_model(model, **{**TINY, **settings, **overrides})
        return train(config, data, Path(out) / folder, resume=resume, verbose=0)

    return run


def in_fresh_process(check: str, *args) -> dict:
    """The JSON result of FRESH_PROCESS_CHECKS[check](*args), run by this file in a new Python."""
    addresses = [f"localhost:{port}" for port in free_ports(2)]
    env = {**os.environ, "TF_CONFIG": cluster(addresses)}  # for the multiworker strategy it must refuse
    process = subprocess.run(
        [sys.executable, __file__, check, *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads(process.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_mirrored_on_two_cpu_devices_takes_the_single_device_steps(synthetic_cifar, tmp_path):
    found = in_fresh_process("mirrored-steps", synthetic_cifar, tmp_path)
    assert found["replicas"] == [2, 1] and found["built_on"] == [2, 2, 2, 1]
    assert found["averaged_two_vs_one"] < 1e-5
    assert found["averaging_moved"] > 1e-3  # lookahead did act
    assert found["resumed_epochs"] == [1, 2, 3, 4, 5, 6]
    assert found["refusals"] == [
        "3 CPU devices can only be set up before TensorFlow runs anything: start the training in a process "
        "of its own (python -m cnn train ...).",
        "--strategy multiworker must be set up before TensorFlow runs anything: start the training in a "
        "process of its own (python -m cnn train ...).",
    ]


@pytest.mark.slow
def test_mirrored_fast_model_holds_its_whitening_bias(synthetic_cifar, tmp_path):
    found = in_fresh_process("mirrored-fast", synthetic_cifar, tmp_path)
    assert found["replicas"] == 2 and max(found["whiten_bias"]) == 0.0


# ---------------------------------------------------------------- two workers on localhost


class Workers:
    """Two `python -m cnn train --strategy multiworker` processes, worker 0 the chief, each with its own folders."""

    def __init__(self, tmp_path: Path, data_dir: Path, *options: str, run_dirs: tuple[Path, Path] | None = None):
        addresses = [f"localhost:{port}" for port in free_ports(2)]
        self.deadline = time.time() + SUBPROCESS_TIMEOUT_S  # one hang guard for the whole pair's life
        self.folders = [tmp_path / f"worker{index}" for index in (0, 1)]
        self.run_dirs = run_dirs or tuple(folder / "run" for folder in self.folders)
        self.processes, self.logs = [], []
        for index, folder in enumerate(self.folders):
            (folder / "tmp").mkdir(parents=True, exist_ok=True)
            env = {**os.environ, "TF_CONFIG": cluster(addresses, index=index), "TMPDIR": str(folder / "tmp")}
            out = str(self.model_path(index))
            training = train_argv(data_dir, self.run_dirs[index], "--strategy", "multiworker", "--out", out, *options)
            command = cnn_command("--models-dir", str(folder / "models"), *training)
            log = (folder / "log.txt").open("w")
            self.logs.append(folder / "log.txt")
            self.processes.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
            log.close()

    def model_path(self, index: int) -> Path:
        return self.folders[index] / "models" / "pair.keras"

    def wait(self) -> list[str]:
        """Each worker's output, once both have exited (killed and failed when they take too long)."""
        try:
            for process in self.processes:
                process.wait(timeout=max(1.0, self.deadline - time.time()))
        except subprocess.TimeoutExpired:
            for process in self.processes:
                process.kill()
                process.wait()
            pytest.fail(
                "the workers did not finish (one waits for the other?):\n"
                + "\n".join(f"--- worker {index}\n{log.read_text()[-2000:]}" for index, log in enumerate(self.logs))
            )
        return [log.read_text() for log in self.logs]

    def summaries(self) -> list[str]:
        """Each worker's closing line (a worker that outlives the chief may log a lost connection after it)."""
        outputs = self.wait()
        for index, (process, output) in enumerate(zip(self.processes, outputs)):
            assert process.returncode == 0, f"worker {index} failed:\n{output[-3000:]}"
        return [
            re.search(r"^(chief |worker \(not the chief\) )?(finished|stopped early): .*$", output, re.M).group(0)
            for output in outputs
        ]

    def temporary_leftovers(self) -> list[str]:
        return [path.name for folder in self.folders for path in (folder / "tmp").glob("cnn-worker*")]


def validation_loss(line: str) -> str:
    return re.search(r"validation accuracy \S+, loss \S+;", line).group(0)


@pytest.mark.slow
def test_two_workers_train_alike_and_only_the_chief_keeps_files(synthetic_cifar, tmp_path):
    from cnn.artifacts import load_model
    from cnn.runs import read_history

    workers = Workers(tmp_path, synthetic_cifar, "--epochs", "1", "--batch-size", "32", "--subset", "64")
    chief, other = workers.summaries()
    assert chief.startswith("chief finished: 1/1 epochs") and other.startswith("worker (not the chief) finished")
    assert validation_loss(chief) == validation_loss(other)  # same weights: the same loss to 6 digits
    model, sidecar = load_model(workers.model_path(0), workers.folders[0] / "models")
    assert sidecar["config"]["strategy"] == "multiworker" and model.output_shape == (None, 10)
    assert [row["epoch"] for row in read_history(workers.run_dirs[0] / "history.jsonl")] == [1]
    # The other worker wrote its run files to a temporary folder, removed, and saved no model.
    assert not workers.run_dirs[1].exists() and not (workers.folders[1] / "models").exists()
    assert workers.temporary_leftovers() == []


def long_run_past_its_first_epoch(tmp_path: Path, data_dir: Path) -> Workers:
    """Two workers on a 100-epoch run, once the chief has checkpointed its first epoch."""
    workers = Workers(tmp_path, data_dir, "--epochs", "100", "--batch-size", "8", "--subset", "64")
    while not (workers.run_dirs[0] / "state.json").exists() and time.time() < workers.deadline:
        time.sleep(0.2)
    return workers


@pytest.mark.slow
def test_a_stop_request_stops_both_workers_at_the_same_batch(synthetic_cifar, tmp_path):
    from cnn.runs import request_stop

    workers = long_run_past_its_first_epoch(tmp_path, synthetic_cifar)
    request_stop(workers.run_dirs[0])  # in the chief's run folder only, as the dashboard would
    chief, other = workers.summaries()
    assert chief.startswith("chief stopped early") and other.startswith("worker (not the chief) stopped early")
    assert validation_loss(chief) == validation_loss(other)


@pytest.mark.slow
def test_a_lost_worker_ends_the_chief_with_a_plain_message_and_its_checkpoint(synthetic_cifar, tmp_path):
    workers = long_run_past_its_first_epoch(tmp_path, synthetic_cifar)
    workers.processes[1].kill()
    chief_output = workers.wait()[0]
    assert workers.processes[0].returncode == 2 and "Traceback" not in chief_output
    assert "error: Another worker stopped answering (" in chief_output
    assert "The run folder keeps its last checkpoint: start every worker again with --resume." in chief_output
    assert json.loads((workers.run_dirs[0] / "state.json").read_text())["epoch"] >= 1


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory, synthetic_cifar) -> Path:
    """The run folder of one epoch of `base`, trained on one device (resumable under any strategy)."""
    from cnn.data import load_cifar10
    from cnn.training import train

    run = tmp_path_factory.mktemp("one-epoch") / "run"
    config = TrainConfig.for_model("base", epochs=1, batch_size=32, subset=64, **TINY)
    train(config, load_cifar10(synthetic_cifar, val_size=20), run, verbose=0)
    return run


def resuming_workers(tmp_path: Path, data_dir: Path, run_dirs: tuple[Path, Path]) -> Workers:
    """Two workers resuming a run to its second epoch, each from its own run folder (the same one, as on a
    cluster's shared volume, or not)."""
    options = ("--epochs", "2", "--batch-size", "32", "--subset", "64", "--resume")
    return Workers(tmp_path, data_dir, *options, run_dirs=run_dirs)


@pytest.mark.slow
def test_two_workers_resume_the_chiefs_run_folder(synthetic_cifar, tmp_path, one_epoch_run):
    from cnn.runs import read_history

    run = shutil.copytree(one_epoch_run, tmp_path / "shared-run")
    workers = resuming_workers(tmp_path, synthetic_cifar, (run, run))  # storage both see, as on a shared volume
    chief, other = workers.summaries()
    assert chief.startswith("chief finished: 2/2 epochs") and validation_loss(chief) == validation_loss(other)
    assert [row["epoch"] for row in read_history(run / "history.jsonl")] == [1, 2]
    assert workers.temporary_leftovers() == []


@pytest.mark.slow
def test_workers_that_would_resume_differently_both_refuse(synthetic_cifar, tmp_path, one_epoch_run):
    run = shutil.copytree(one_epoch_run, tmp_path / "chief-run")
    training_files = ("history.jsonl", "checkpoint.keras", "state.json")  # what a resume continues from
    before = {name: (run / name).read_bytes() for name in training_files}
    workers = resuming_workers(tmp_path, synthetic_cifar, (run, tmp_path / "not-shared"))  # worker 1 cannot see it
    outputs = workers.wait()
    for process, output in zip(workers.processes, outputs):
        assert process.returncode == 2 and "Traceback" not in output
        assert (
            "error: The workers disagree on epoch to start from (worker 0: 1, worker 1: 0). Every worker must "
            "read the same data, and to resume, the same run folder"
        ) in output
    assert {name: (run / name).read_bytes() for name in training_files} == before


if __name__ == "__main__":
    print(json.dumps(FRESH_PROCESS_CHECKS[sys.argv[1]](*sys.argv[2:])))
