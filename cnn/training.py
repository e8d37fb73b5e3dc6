"""Training with `model.fit` and callbacks: history log, checkpoints, resume, stop flag.

A run lives in a folder (`runs/NAME/`, owned by `cnn.runs`, which names its
files) that other processes read while it trains: the status, one history line
per finished epoch, the checkpoint (the full model with its optimizer after the
last finished epoch) and its state. Creating the file `STOP` there stops the
run after the current batch. A killed run resumes from its last checkpoint and
loses at most one epoch; a run stopped mid-epoch redoes that epoch on resume.

This module holds the run's settings and its orchestration (build or resume,
compile, fit, finish); the pieces live in their own modules: the callbacks in
`cnn.callbacks`, the tf.data input in `cnn.input_pipeline`, the learning-rate
schedules in `cnn.lr_schedules` and the machine's description in `cnn.hardware`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from cnn.artifacts import atomic_write_text, keras_load
from cnn.data import Cifar10
from cnn.errors import TrainingError, UserError
from cnn.hardware import describe_hardware
from cnn.input_pipeline import training_batches, training_images, validation_data
from cnn.lr_schedules import LR_SCHEDULES, learning_rate_schedule
from cnn.runs import RunFiles, read_history, read_json, write_status
from cnn.zoo import FLIPS

OPTIMIZERS = ("adam", "sgd_nesterov")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (saved as JSON beside every model)."""

    model: str
    epochs: int = 10  # full passes over the training images
    batch_size: int = 128  # images per optimizer step
    learning_rate: float = 1e-3  # peak step size (per mean-loss gradient)
    optimizer: str = "adam"  # "adam" or "sgd_nesterov"
    momentum: float = 0.9  # SGD momentum (ignored by Adam)
    weight_decay: float = 0.0  # decoupled decay per step, per unit of learning rate
    label_smoothing: float = 0.0  # probability mass spread over the other classes
    lr_schedule: str = "constant"  # "constant", "cosine" (to 0) or "warmup_linear" (airbench)
    augment: bool = False  # random flip + shift up to 2 px
    flip: str = "random"  # with augment: "random" (a coin per draw) or "alternate" (airbench: every other epoch)
    jpeg_augment: float = 0.0  # share of training images re-encoded as JPEG
    jpeg_quality: tuple[int, int] = (60, 95)  # the re-encoding quality is drawn from this range
    lookahead: bool = False  # average the weights every 5 steps, more and more towards the end (airbench)
    whiten_bias_epochs: int | None = None  # train the `whiten_bias` layer for the first N epochs only (airbench: 3)
    subset: int | None = None  # train on the first N training images only (classroom runs)
    val_size: int = 5_000  # the last N training images validate
    seed: int = 0  # for repeatable runs
    mixed_precision: bool = True  # bf16 compute where the CPU has it natively (cnn.hardware)
    data_dir: str | None = None  # CIFAR-10 folder; None searches CIFAR10_DIR and Keras's cache
    use_sample: bool = False  # train on the bundled 1,000-image sample (cnn.data.load_sample_for_training)
    spec: dict | None = None  # a Build-page model: its layer list (cnn.spec, checked); `model` is its name
    strategy: str | None = None  # None (one device), "mirrored" or "multiworker": see cnn.distribute
    cpu_devices: int | None = None  # mirrored on a machine without GPUs: split its CPU into N logical devices

    def __post_init__(self):
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be at least 1, not {self.epochs}")
        if not 1 <= self.batch_size <= 8192:
            problems.append(f"batch size must be 1-8192, not {self.batch_size}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            problems.append(f"learning rate must be a positive number, not {self.learning_rate}")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {', '.join(OPTIMIZERS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            problems.append(f"learning-rate schedule must be one of {', '.join(LR_SCHEDULES)}")
        if self.flip not in FLIPS:
            problems.append(f"flip must be one of {', '.join(FLIPS)}, not {self.flip!r}")
        if self.whiten_bias_epochs is not None and not (
            isinstance(self.whiten_bias_epochs, int) and self.whiten_bias_epochs >= 0
        ):
            problems.append(f"whitening-bias epochs must be a whole number >= 0, not {self.whiten_bias_epochs!r}")
        if self.subset is not None and self.subset < 1:
            problems.append(f"subset must be at least 1 image, not {self.subset}")
        if not 0 <= self.jpeg_augment <= 1:
            problems.append("the JPEG augmentation share must be between 0 and 1")
        if _is_quality_range(self.jpeg_quality):
            object.__setattr__(self, "jpeg_quality", tuple(self.jpeg_quality))  # JSON gives a list
        else:
            problems.append("the JPEG quality range must be two numbers 1-100, low first")
        if not 0 <= self.label_smoothing < 1:
            problems.append("label smoothing must be in [0, 1)")
        if self.spec is not None:
            problems += self._spec_problems()
        problems += _strategy_problems(self.strategy, self.cpu_devices)
        if problems:
            raise UserError("Invalid training settings: " + "; ".join(problems) + ".")

    def _spec_problems(self) -> list[str]:
        """Check a built model's spec and name against the model-size limits; store the canonical spec.

        Epochs and images are limited where a student starts a run (cnn.classroom), not here: the command
        line is not limited."""
        from cnn.spec import check_model_name, check_spec, classroom_limits

        try:
            limits = classroom_limits()
            object.__setattr__(self, "spec", check_spec(self.spec, limits))
            check_model_name(self.model)
        except UserError as error:
            return [str(error).rstrip(".")]
        return []

    @classmethod
    def for_model(cls, model: str, **overrides) -> "TrainConfig":
        """The zoo recipe of `model`, with the given settings (None = keep the recipe's) on top.

        With a `spec` (a Build-page model), `model` is the student's name and the recipe is
        `cnn.spec.BUILD_RECIPE`.
        """
        from cnn.spec import BUILD_RECIPE
        from cnn.zoo import get_entry

        recipe = dict(BUILD_RECIPE if overrides.get("spec") is not None else get_entry(model).recipe)
        recipe.update({key: value for key, value in overrides.items() if value is not None})
        return cls(model=model, **recipe)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _strategy_problems(strategy, cpu_devices) -> list[str]:
    from cnn.distribute import MAX_CPU_DEVICES, STRATEGIES

    if strategy is not None and strategy not in STRATEGIES:
        return [f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}"]
    if cpu_devices is not None and strategy != "mirrored":
        return ["CPU devices apply to the mirrored strategy only"]
    if cpu_devices is not None and not (isinstance(cpu_devices, int) and 1 <= cpu_devices <= MAX_CPU_DEVICES):
        return [f"CPU devices must be a whole number 1-{MAX_CPU_DEVICES}, not {cpu_devices!r}"]
    return []


def _is_quality_range(value) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(q, int) for q in value)
        and 1 <= value[0] <= value[1] <= 100
    )


@dataclass
class TrainResult:
    """What a run produced: the shipped-form model and how it got there."""

    model: object  # keras.Model in its shipped form (float32, no optimizer)
    config: TrainConfig
    history: list[dict]
    epochs_done: int
    wall_time_s: float
    stopped_early: bool
    val_accuracy: float | None
    val_loss: float | None
    hardware: str = field(default_factory=describe_hardware)
    replicas: int = 1  # model copies that split each batch (see cnn.distribute)
    workers: int = 1
    is_chief: bool = True  # False: another worker of a multi-worker run keeps the run folder and saves the model


def compile_model(model, config: TrainConfig, total_steps: int) -> None:
    """Compile `model` with the config's optimizer, learning-rate schedule over `total_steps`, loss and metrics."""
    import keras

    rate = learning_rate_schedule(config.lr_schedule, config.learning_rate, total_steps)
    decay = config.weight_decay or None
    if config.optimizer == "sgd_nesterov":
        optimizer = keras.optimizers.SGD(rate, momentum=config.momentum, nesterov=True, weight_decay=decay)
    else:
        optimizer = keras.optimizers.Adam(rate, weight_decay=decay)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
    )


# ---------------------------------------------------------------- the run


def train(
    config: TrainConfig,
    data: Cifar10,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    verbose: int = 2,
    clear_stop: bool = True,
) -> TrainResult:
    """Train `config.model` on `data`, recording everything in `run_dir`.

    The run folder's status ends in "saving" (training done, the model not saved yet):
    the caller that saves the model records the final state (see `cnn.runs.WorkerRecord`).

    Args:
        config: the run's settings; with `config.strategy`, on several devices or workers (cnn.distribute).
        data: CIFAR-10 with its validation split.
        run_dir: the run folder (created); with `resume`, continue its checkpoint. On a worker
            that is not the chief, a temporary folder takes its place (only the chief's files are kept).
        verbose: Keras's fit verbosity (1 = progress bar).
        clear_stop: delete a STOP request left from before (a worker that cleared it when it
            took the run's lock passes False, so a Stop pressed while it started up still counts).

    Returns:
        A TrainResult whose model is in shipped form (float32, no optimizer).
    """
    from cnn.distribute import place, worker_run_folder

    placement = place(config.strategy, config.cpu_devices)  # first: TensorFlow sets strategies up before any op
    files = RunFiles(Path(run_dir))
    resume_files = (files.checkpoint.name, files.state.name, files.history.name, files.status.name)
    with worker_run_folder(Path(run_dir), placement, resume=resume, resume_files=resume_files) as folder:
        result = _train(config, data, folder, placement, resume=resume, verbose=verbose, clear_stop=clear_stop)
    return dataclasses.replace(
        result, replicas=placement.replicas, workers=placement.workers, is_chief=placement.is_chief
    )


def _train(
    config: TrainConfig, data: Cifar10, run_dir: Path, placement, *, resume: bool, verbose: int, clear_stop: bool
):
    import keras

    from cnn.distribute import check_batch_split, check_workers_agree
    from cnn.models import WHITEN_BIAS
    from cnn.zoo import get_entry

    entry = get_entry(config.model, config.spec)
    check_batch_split(config.batch_size, placement.replicas)
    files = RunFiles(Path(run_dir))
    files.folder.mkdir(parents=True, exist_ok=True)
    if clear_stop:
        files.stop_flag.unlink(missing_ok=True)
    images, labels = training_images(config, data)
    steps_per_epoch = math.ceil(len(labels) / config.batch_size)
    # Before any variable exists: on several workers, creating one is itself a collective (the chief's value
    # is broadcast), so workers that build different models would wait for each other forever.
    check_workers_agree(placement, epoch_to_start_from=_resume_epoch(files, resume), training_images=len(labels))
    keras.utils.set_random_seed(config.seed)
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16" if config.mixed_precision else "float32")
    try:
        # Building, compiling and fitting in the strategy's scope makes every variable one per replica.
        with placement.scope():
            model, initial_epoch, wall_offset = start_or_resume(
                entry, config, files, images, resume, steps_per_epoch * config.epochs
            )
        if config.whiten_bias_epochs is not None and WHITEN_BIAS not in {layer.name for layer in model.layers}:
            raise UserError(
                f"{config.model!r} has no whitening layer: whiten_bias_epochs applies only to a "
                "network that starts with one (fast, best)."
            )
        write_status(
            files,
            state="running",
            pid=os.getpid(),
            model=config.model,
            epoch=initial_epoch,
            epochs=config.epochs,
            batch=0,
            batches=steps_per_epoch,
            message="",
            config=config.to_dict(),
        )
        started = time.time()
        if initial_epoch < config.epochs:
            with placement.scope():
                model.fit(
                    placement.shard_by_data(training_batches(images, labels, config, initial_epoch)),
                    epochs=config.epochs,
                    initial_epoch=initial_epoch,
                    steps_per_epoch=steps_per_epoch,
                    validation_data=validation_data(data),
                    validation_batch_size=512,
                    verbose=verbose,
                    callbacks=_run_callbacks(config, files, placement, steps_per_epoch, wall_offset, started),
                )
    finally:
        keras.config.set_dtype_policy(previous_policy)
    history = read_history(files.history)
    if history and any(not math.isfinite(row.get("loss", 0.0)) for row in history[-1:]):
        raise TrainingError("The loss became NaN (try a smaller learning rate): nothing was saved.")
    state = read_json(files.state, "run state")
    return _finish(entry, model, config, files, history, state, data)


def _run_callbacks(
    config: TrainConfig, files: RunFiles, placement, steps_per_epoch: int, wall_time_before: float, started: float
) -> list:
    """The run's callbacks (cnn.callbacks), in the order they must run at the end of a batch or epoch.

    The whitening-bias hold comes before lookahead (which then only ever sees the held
    value), and both come before the recorder, which checkpoints the weights they leave.
    """
    import keras

    from cnn.callbacks import FreezeWhitenBias, Lookahead, RunRecorder, StopOnRequest

    callbacks = []
    if config.whiten_bias_epochs is not None:
        callbacks.append(FreezeWhitenBias(from_epoch=config.whiten_bias_epochs))
    if config.lookahead:
        callbacks.append(Lookahead(total_steps=steps_per_epoch * config.epochs, total_epochs=config.epochs))
    return callbacks + [
        RunRecorder(files, config.epochs, wall_time_before, started),
        StopOnRequest(files.stop_flag, placement.any_worker),
        keras.callbacks.TerminateOnNaN(),
    ]


def _resume_epoch(files: RunFiles, resume: bool) -> int:
    """The epoch that `start_or_resume` will continue from (0: a fresh start)."""
    return int(read_json(files.state, "run state").get("epoch", 0)) if resume and files.checkpoint.exists() else 0


def start_or_resume(entry, config: TrainConfig, files: RunFiles, images, resume: bool, total_steps: int):
    """A fresh compiled model, or with `resume` the checkpoint of an interrupted run (call it in the run's scope).

    Args:
        entry: the model's zoo entry (`cnn.zoo.get_entry`): builds a fresh model.
        config: the run's settings.
        files: the run folder's files; a fresh start deletes its history, checkpoint and state.
        images: the training images (the fast model's whitening layer is computed from them).
        resume: continue the folder's checkpoint when it has one. Its history is cut to the
            checkpoint's epochs, and an epoch that a Stop cut short is done again.
        total_steps: optimizer steps of the whole run (the learning-rate schedule's length).

    Returns:
        (model, epoch to continue from, seconds of training recorded so far).
    """
    if resume and files.checkpoint.exists():
        state = read_json(files.state, "run state")
        history = read_history(files.history)
        epoch = int(state.get("epoch", 0))
        saved_config = read_json(files.status, "run status").get("config", {})
        if saved_config.get("model") not in (None, config.model):
            raise TrainingError(f"{files.folder} holds a run of {saved_config['model']!r}, not {config.model!r}.")
        # Lines past the checkpoint belong to an epoch whose checkpoint never landed: drop them.
        kept = history[:epoch]
        if kept and kept[-1].get("partial_batches"):
            # A Stop cut that epoch short: it is done again (from the weights it reached), so a
            # resumed run always ends with whole epochs, also when the Stop came in the last one.
            kept, epoch = kept[:-1], epoch - 1
        atomic_write_text(files.history, "".join(json.dumps(row) + "\n" for row in kept))
        try:
            model = keras_load(files.checkpoint, compile=True)
        except Exception as error:  # noqa: BLE001 - any load failure means an unusable checkpoint
            raise TrainingError(f"The checkpoint {files.checkpoint} cannot be read ({type(error).__name__}).") from None
        return model, epoch, float(state.get("wall_time_s", 0.0))
    for stale in (files.history, files.checkpoint, files.state):
        stale.unlink(missing_ok=True)
    model = entry.build_trainable(calibration_images=images[:5000] if entry.needs_calibration else None)
    compile_model(model, config, total_steps)
    return model, 0, 0.0


def _finish(entry, model, config, files: RunFiles, history, state, data: Cifar10) -> TrainResult:
    epochs_done = int(state.get("epoch", 0))
    write_status(
        files,
        state="saving",
        epoch=epochs_done,
        message="Training done: measuring validation accuracy and saving the model.",
    )
    shipped = entry.export(model)
    val_accuracy = val_loss = None
    if len(data.val):
        from cnn.evaluation import evaluate

        validation = evaluate(shipped, data.val)
        val_accuracy, val_loss = validation.accuracy, validation.loss
    stopped = epochs_done < config.epochs or bool(history and history[-1].get("partial_batches"))
    return TrainResult(
        model=shipped,
        config=config,
        history=history,
        epochs_done=epochs_done,
        wall_time_s=float(state.get("wall_time_s", 0.0)),
        stopped_early=stopped,
        val_accuracy=val_accuracy,
        val_loss=val_loss,
    )
