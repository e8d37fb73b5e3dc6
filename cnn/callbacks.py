"""The Keras callbacks of a training run: run-folder recording, stop requests, whitening-bias hold, lookahead.

Each is a small `keras.callbacks.Callback` that gets what it needs in its
constructor; `cnn.training` puts them together in the order they must run.
This module imports Keras, so modules that must open without TensorFlow
(`cnn.training` included) import it inside functions only.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from cnn.artifacts import atomic_write_text, save_keras_atomic
from cnn.models import WHITEN_BIAS
from cnn.runs import RunFiles, write_status

STATUS_INTERVAL_S = 0.5  # how often the batch progress is written for pollers
LOOKAHEAD_EVERY = 5  # optimizer steps between two weight averages (airbench)


class RunRecorder(keras.callbacks.Callback):
    """Writes history, checkpoint and state after each epoch, and batch progress while training.

    Args:
        files: the run folder's files.
        total_epochs: the epochs the run trains in all (for the status).
        wall_time_before: seconds of training that earlier sessions of this run recorded (a resume).
        started: the `time.time()` at which this session's fit started.
    """

    def __init__(self, files: RunFiles, total_epochs: int, wall_time_before: float, started: float):
        super().__init__()
        self._files = files
        self._total_epochs = total_epochs
        self._wall_time_before = wall_time_before
        self._started = started
        self._last_status = 0.0
        self._epoch_started = time.time()
        self._batches = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_started = time.time()
        write_status(self._files, state="running", epoch=epoch, epochs=self._total_epochs, batch=0)

    def on_train_batch_end(self, batch, logs=None):
        self._batches = batch + 1
        now = time.time()
        if now - self._last_status >= STATUS_INTERVAL_S:
            self._last_status = now
            write_status(self._files, batch=batch + 1, batches=self.params.get("steps"))

    def on_epoch_end(self, epoch, logs=None):
        steps = self.params.get("steps")
        row = {
            "epoch": epoch + 1,
            "seconds": round(time.time() - self._epoch_started, 2),
            "learning_rate": _current_learning_rate(self.model),
        }
        row.update({key: float(value) for key, value in (logs or {}).items() if key != "learning_rate"})
        if steps and self._batches < steps:
            row["partial_batches"] = self._batches  # stopped mid-epoch
            row["batches_per_epoch"] = steps  # so the charts can say "N of M batches"
        # The history line first: a kill between the two writes leaves one line more than the checkpoint,
        # which a resume drops.
        with self._files.history.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        save_keras_atomic(self.model, self._files.checkpoint)
        wall_time = self._wall_time_before + time.time() - self._started
        atomic_write_text(self._files.state, json.dumps({"epoch": epoch + 1, "wall_time_s": wall_time}))
        write_status(self._files, epoch=epoch + 1, batch=steps, batches=steps)


def _current_learning_rate(model) -> float:
    """The optimizer's learning rate at its current step (a schedule is evaluated there)."""
    optimizer = model.optimizer
    rate = optimizer.learning_rate
    return float(np.asarray(rate(optimizer.iterations) if callable(rate) else rate))


class StopOnRequest(keras.callbacks.Callback):
    """Stops after the current batch once the file `stop_flag` exists (another process creates it).

    Args:
        stop_flag: the file whose existence asks the run to stop.
        any_worker: turns this worker's answer into the answer of all workers
            (`cnn.distribute.Placement.any_worker`), so that several workers stop at
            the same batch; the default, for one process, keeps it as it is.
    """

    def __init__(self, stop_flag: Path, any_worker: Callable[[bool], bool] = bool):
        super().__init__()
        self._stop_flag = stop_flag
        self._any_worker = any_worker

    def on_train_batch_end(self, batch, logs=None):
        if self._any_worker(self._stop_flag.exists()):
            self.model.stop_training = True


class FreezeWhitenBias(keras.callbacks.Callback):
    """From epoch `from_epoch` (0-based) on, hold the bias of the layer `layer_name` where it is (airbench).

    Written back after every step rather than made untrainable, since a compiled
    model keeps training what it was compiled with. Put it before `Lookahead`,
    which then only ever sees the held value.
    """

    def __init__(self, from_epoch: int, layer_name: str = WHITEN_BIAS):
        super().__init__()
        self._from_epoch = from_epoch
        self._layer_name = layer_name
        self._held = None

    def on_epoch_begin(self, epoch, logs=None):
        if epoch >= self._from_epoch and self._held is None:
            self._held = np.array(self.model.get_layer(self._layer_name).bias)

    def on_train_batch_end(self, batch, logs=None):
        if self._held is not None:
            self.model.get_layer(self._layer_name).bias.assign(self._held)


def lookahead_decay(step: int, total_steps: int) -> float:
    """airbench's lookahead schedule: how much of the slow weights is kept at `step`.

    0 at the start (plain SGD), rising as (step/total)**3 to 0.95**5 at the end,
    so the last epochs average over many recent weights.
    """
    return 0.95**5 * (min(step, total_steps) / total_steps) ** 3


class Lookahead(keras.callbacks.Callback):
    """Every `every` optimizer steps, average slow and current weights and continue from the average.

    At step s (a multiple of `every`), with keep = `lookahead_decay(s, total_steps)`:
    slow = slow + (1 - keep) * (current - slow), and the model's weights become the
    slow ones, i.e. the current weights are pulled back `keep` of the way to the
    slow weights. The slow weights start from the model's (also after a resume: a
    resumed run loses at most `every` steps of averaging). At the end of the last
    epoch the model takes the slow weights, before the checkpoint is written: the
    finished model is the slow copy.

    Args:
        total_steps: the optimizer steps of the whole run (the schedule's end).
        total_epochs: the run's epochs (the last one ends on the slow weights).
        every: steps between two averages.
    """

    def __init__(self, total_steps: int, total_epochs: int, every: int = LOOKAHEAD_EVERY):
        super().__init__()
        self._total_steps = total_steps
        self._total_epochs = total_epochs
        self._every = every
        self._slow = None

    def on_train_begin(self, logs=None):
        self._slow = self.model.get_weights()

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if step % self._every:
            return
        keep = lookahead_decay(step, self._total_steps)
        for slow, current in zip(self._slow, self.model.get_weights()):
            slow += (1.0 - keep) * (current - slow)
        self.model.set_weights(self._slow)

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self._total_epochs:  # callbacks after this one (RunRecorder) save the final weights
            self.model.set_weights(self._slow)
