"""Training on several devices or machines with TensorFlow's own `tf.distribute` strategies.

`TrainConfig.strategy` picks one: None trains on Keras's default device, as
always; "mirrored" copies the model onto every GPU of this machine (or onto
`cpu_devices` logical CPU devices when it has none); "multiworker" copies it
onto every worker named in the `TF_CONFIG` environment variable. The batch
size stays the GLOBAL batch: each step splits it evenly over the replicas and
sums their gradients, so the step's gradient is the single-device gradient of
the same batch and the learning rate needs no change.

Under "multiworker" every worker runs the same code, collectives included, but
only the chief keeps what it writes: the others write their run files to a
temporary folder that is removed at the end (the Keras multi-worker guide's
pattern: saving may itself need every worker), and decisions taken from files
(a STOP request, where to resume) are agreed across workers, since one worker
leaving the loop early would leave the others waiting forever.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cnn.errors import TrainingError, UserError

STRATEGIES = ("mirrored", "multiworker")
MAX_CPU_DEVICES = 16  # logical CPU devices "mirrored" may split this machine's CPU into
CLUSTER_JOBS = ("chief", "worker")  # the TF_CONFIG jobs MultiWorkerMirroredStrategy trains with
GUIDE = "see the README section 'Training on several devices or machines'"


# ---------------------------------------------------------------- TF_CONFIG


@dataclass(frozen=True)
class ClusterTask:
    """This process's place in the `TF_CONFIG` cluster: its job, its index in that job, the cluster's size."""

    job: str
    index: int
    workers: int  # processes that train, the chief included


def read_tf_config(environ=None) -> ClusterTask:
    """The cluster task of `TF_CONFIG` (in `environ`, default os.environ), checked without TensorFlow.

    MultiWorkerMirroredStrategy reads the same variable; checking it first turns
    its mistakes into one plain message instead of a hang or a traceback.
    """
    text = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    if not text:
        raise UserError(
            f"--strategy multiworker reads the cluster from the TF_CONFIG environment variable, "
            f"which is not set: {GUIDE}."
        )
    try:
        content = json.loads(text)
    except json.JSONDecodeError:
        raise UserError(f"TF_CONFIG is not valid JSON: {GUIDE}.") from None
    cluster = content.get("cluster") if isinstance(content, dict) else None
    task = content.get("task") if isinstance(content, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise UserError(f'TF_CONFIG needs a "cluster" and a "task" object: {GUIDE}.')
    _check_cluster(cluster)
    job, index = task.get("type"), task.get("index")
    if job not in cluster:
        raise UserError(f"TF_CONFIG's task type {job!r} is not one of the cluster's jobs ({', '.join(cluster)}).")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[job]):
        raise UserError(
            f"TF_CONFIG's task index {index!r} is not 0-{len(cluster[job]) - 1} "
            f"(the cluster has {len(cluster[job])} {job!r} address(es))."
        )
    return ClusterTask(job=job, index=index, workers=sum(len(addresses) for addresses in cluster.values()))


def is_chief_task(environ=None) -> bool:
    """Whether `TF_CONFIG` makes this process the chief, by TensorFlow's rule (the "chief" task, else the
    first "worker"), checked as `read_tf_config` does, without starting TensorFlow."""
    task = read_tf_config(environ)
    cluster = json.loads((os.environ if environ is None else environ)["TF_CONFIG"])["cluster"]
    return task.job == "chief" or (task.job == "worker" and task.index == 0 and not cluster.get("chief"))


def _check_cluster(cluster: dict) -> None:
    others = sorted(set(cluster) - set(CLUSTER_JOBS))
    if others:
        raise UserError(
            f"TF_CONFIG's cluster has jobs MultiWorkerMirroredStrategy does not train with "
            f"({', '.join(others)}): use only 'worker' (and at most one 'chief')."
        )
    if not cluster.get("worker") and not cluster.get("chief"):
        raise UserError('TF_CONFIG\'s cluster lists no workers: give "worker": ["host:port", ...].')
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not all(_is_address(address) for address in addresses):
            raise UserError(f'TF_CONFIG\'s {job!r} job must be a list of "host:port" addresses.')
    if len(cluster.get("chief", [])) > 1:
        raise UserError("TF_CONFIG's cluster may have at most one chief.")


def _is_address(address) -> bool:
    host, _, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


# ---------------------------------------------------------------- the strategy


@dataclass(frozen=True)
class Placement:
    """Where a run trains: its tf.distribute strategy (None: Keras's default device) and this worker's role."""

    strategy: object | None = None  # a tf.distribute.Strategy
    replicas: int = 1  # model copies that split each global batch
    workers: int = 1  # processes that train together
    is_chief: bool = True  # this worker's run files and model are the ones kept
    task_index: int = 0

    @property
    def multi_worker(self) -> bool:
        return self.workers > 1

    @contextlib.contextmanager
    def scope(self):
        """The context that model building, compiling and fitting run in.

        On several workers, a worker that stops answering (killed, crashed, its
        machine gone) becomes one TrainingError on the others, not a traceback.
        """
        if self.strategy is None:
            yield
            return
        import tensorflow as tf

        try:
            with self.strategy.scope():
                yield
        except (
            tf.errors.UnavailableError,
            tf.errors.CancelledError,
            tf.errors.DeadlineExceededError,
            tf.errors.AbortedError,
        ) as error:
            if not self.multi_worker:
                raise
            reason = error.message.strip().splitlines()[0][:200] if error.message else type(error).__name__
            raise TrainingError(
                f"Another worker stopped answering ({reason}). The run folder keeps its last "
                "checkpoint: start every worker again with --resume."
            ) from None

    def shard_by_data(self, dataset):
        """`dataset` set to be split batch by batch over the replicas (unchanged without a strategy).

        In-memory data has no files to split, so each worker cuts its part out of
        every global batch (AUTO would fall back to this too, with a warning).
        """
        if self.strategy is None:
            return dataset
        import tensorflow as tf

        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return dataset.with_options(options)

    def gather(self, values: list[float]) -> list[list[float]]:
        """Every worker's `values`, in worker order, on every worker (a collective: all workers must call it)."""
        if not self.multi_worker:
            return [list(values)]
        rows = _gather_function(self.strategy)(_as_tensor(values)).numpy()
        per_worker = self.replicas // self.workers  # each replica of a worker sends the same row
        return [list(row) for row in rows[::per_worker]]

    def any_worker(self, flag: bool) -> bool:
        """True on every worker when `flag` is true on at least one (a collective on several workers)."""
        return flag if not self.multi_worker else any(row[0] for row in self.gather([float(flag)]))


def place(kind: str | None, cpu_devices: int | None = None) -> Placement:
    """The Placement for `TrainConfig.strategy` and `cpu_devices`.

    Call it before anything else in the process runs TensorFlow: logical CPU
    devices and multi-worker collectives can only be set up at start-up.
    """
    if kind is None:
        return Placement()
    if kind == "mirrored":
        return _mirrored(cpu_devices)
    if kind == "multiworker":
        return _multi_worker()
    raise UserError(f"strategy must be one of {', '.join(STRATEGIES)}, not {kind!r}.")


def _mirrored(cpu_devices: int | None) -> Placement:
    import tensorflow as tf

    if cpu_devices is None:
        strategy = _cached(("mirrored",), tf.distribute.MirroredStrategy)
    else:
        if tf.config.list_physical_devices("GPU"):
            raise UserError(
                "--cpu-devices splits the CPU of a machine without GPUs; this one has GPUs, "
                "which --strategy mirrored uses by itself."
            )
        devices = use_cpu_devices(cpu_devices)
        strategy = _cached(("mirrored", cpu_devices), lambda: tf.distribute.MirroredStrategy(devices))
    return Placement(strategy=strategy, replicas=strategy.num_replicas_in_sync)


def use_cpu_devices(count: int) -> list[str]:
    """Split this machine's CPU into `count` logical devices (the names MirroredStrategy takes).

    They share the same cores, so this is for trying and testing a strategy,
    not for speed. TensorFlow allows it only before it runs its first operation.
    """
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    if len(tf.config.get_logical_device_configuration(cpu) or [None]) != count:  # (listing them would start TF)
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
        except RuntimeError:
            raise TrainingError(
                f"{count} CPU devices can only be set up before TensorFlow runs anything: "
                "start the training in a process of its own (python -m cnn train ...)."
            ) from None
    return [device.name for device in tf.config.list_logical_devices("CPU")]


def _multi_worker() -> Placement:
    task = read_tf_config()  # before TensorFlow, which would hang or fail obscurely on a bad one
    import tensorflow as tf

    def create():
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError:  # "Collective ops must be configured at program startup"
            raise TrainingError(
                "--strategy multiworker must be set up before TensorFlow runs anything: "
                "start the training in a process of its own (python -m cnn train ...)."
            ) from None

    strategy = _cached(("multiworker",), create)
    _let_keras_fit_on_several_workers()
    return Placement(
        strategy=strategy,
        replicas=strategy.num_replicas_in_sync,
        workers=task.workers,
        is_chief=bool(strategy.extended.should_checkpoint),
        task_index=task.index,
    )


def _let_keras_fit_on_several_workers() -> None:
    """Mend the two places where Keras 3's TensorFlow `fit` fails under MultiWorkerMirroredStrategy.

    Both pass per-replica values to `strategy.reduce` in a form that only the
    single-machine strategies accept (keras-team/keras#20585, open for Keras 3.0-3.15):
    building the model reduces the first batch's whole (x, y) structure, and
    each step reduces its scalar metrics along an axis they do not have.
    The build only needs the batch's shapes, so it takes this worker's share; the
    metrics are averaged over the replicas (equal shares: `check_batch_split`).
    Only a multi-worker process runs this; single-machine training is untouched.
    """
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer.reduce_per_replica, "mended_for_workers", False):
        return
    build, reduce_per_replica = trainer.TensorFlowTrainer._maybe_symbolic_build, trainer.reduce_per_replica

    def local_share(value, strategy):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def build_from_local_share(self, iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tree.map_structure(
                    lambda value: local_share(value, self.distribute_strategy), next(batches)
                )
                break
        return build(self, data_batch=data_batch)

    def reduce_over_workers(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return tree.map_structure(lambda value: strategy.reduce("MEAN", value, axis=None), values)
        return reduce_per_replica(values, strategy, reduction)

    reduce_over_workers.mended_for_workers = True
    trainer.TensorFlowTrainer._maybe_symbolic_build = build_from_local_share
    trainer.reduce_per_replica = reduce_over_workers


_STRATEGIES: dict[tuple, object] = {}  # one strategy per kind per process: TensorFlow sets each up once


def _cached(key: tuple, create):
    if key not in _STRATEGIES:
        _STRATEGIES[key] = create()
    return _STRATEGIES[key]


_GATHERS: dict[int, object] = {}


def _gather_function(strategy):
    """A compiled all-gather of one float vector per replica (eager collectives cost ~0.2 s a call, this ~3 ms)."""
    if id(strategy) not in _GATHERS:
        import tensorflow as tf

        @tf.function
        def gather(values):
            return strategy.gather(strategy.run(tf.identity, args=(values,)), axis=0)

        _GATHERS[id(strategy)] = gather
    return _GATHERS[id(strategy)]


def _as_tensor(values: list[float]):
    import tensorflow as tf

    return tf.constant([[float(value) for value in values]], tf.float32)  # exact for counts below 2**24


# ---------------------------------------------------------------- checks and the run folder


def check_batch_split(batch_size: int, replicas: int) -> None:
    """Refuse a global batch that does not split evenly: the replicas' mean losses would then be unequally
    weighted, and the step would no longer be the single-device step."""
    if batch_size % replicas:
        raise UserError(
            f"The batch size {batch_size} does not split evenly over {replicas} replicas: "
            f"choose a multiple of {replicas}."
        )


def check_workers_agree(placement: Placement, **facts: float) -> None:
    """Refuse to train when the workers disagree on `facts` (e.g. the epoch to resume from, the image count).

    Every worker raises the same error, so none is left waiting for the others.
    """
    rows = placement.gather(list(facts.values()))
    for position, name in enumerate(facts):
        seen = [row[position] for row in rows]
        if len(set(seen)) > 1:
            by_worker = ", ".join(f"worker {index}: {value:g}" for index, value in enumerate(seen))
            raise TrainingError(
                f"The workers disagree on {name.replace('_', ' ')} ({by_worker}). Every worker must read the same "
                "data, and to resume, the same run folder: put it on storage that every worker sees."
            )


@contextlib.contextmanager
def worker_run_folder(run_dir: Path, placement: Placement, *, resume: bool, resume_files: tuple[str, ...]):
    """The folder this worker writes its run files to.

    The chief writes the run folder itself. Another worker of a multi-worker run
    writes a temporary folder, removed at the end; to resume, it starts from a
    copy of the run folder's `resume_files` (the run folder must be on storage
    it can read; `check_workers_agree` catches it when it is not).
    """
    if placement.is_chief:
        yield Path(run_dir)
        return
    temporary = Path(tempfile.mkdtemp(prefix=f"cnn-worker{placement.task_index}-"))
    try:
        for name in resume_files if resume else ():
            if (Path(run_dir) / name).is_file():
                shutil.copy2(Path(run_dir) / name, temporary / name)
        yield temporary
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
