"""Command line: `python -m cnn models|train|evaluate|predict|info ...`.

Every user mistake (bad argument, missing data, bad model file, bad image or
URL) prints one plain line on stderr and exits with status 2; nothing is
half-written.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter is not for users

from cnn.distribute import STRATEGIES  # noqa: E402 (standard library only: --help stays fast)
from cnn.errors import UserError  # noqa: E402
from cnn.zoo import FLIPS  # noqa: E402 (no TensorFlow, no NumPy)

EXIT_USER_ERROR = 2
EXIT_SOME_FAILED = 1


def _index_range(text: str) -> tuple[int | None, int | None]:
    try:
        start, stop = text.split(":")
        return (int(start) if start else None, int(stop) if stop else None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a range like 0:1000") from None


def _parsed(text: str, parse, kind: str):
    """`parse(text)` (int, float), or the argparse error "'TEXT' is not KIND"."""
    try:
        return parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None


def _positive_int(text: str) -> int:
    value = _parsed(text, int, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _jpeg_quality(text: str) -> int:
    value = _positive_int(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"a JPEG quality is 1-100, not {value}")
    return value


def _quality_range(text: str) -> tuple[int, int]:
    low, _, high = text.partition(":")
    try:
        return int(low), int(high)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a quality range like 60:95") from None


def _positive_float(text: str) -> float:
    value = _parsed(text, float, "a number")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} must be positive")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cnn", description="Train, evaluate and use CIFAR-10 CNNs.")
    parser.add_argument("--models-dir", help="folder of saved models (default: models/ or CNN_MODELS_DIR)")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("models", help="list the zoo: name, description, parameters")

    train = commands.add_parser("train", help="train a zoo model and save it with its sidecar")
    train.add_argument("--model", help="a zoo model, or with --spec the name of your model (required unless --job)")
    train.add_argument(
        "--spec",
        metavar="FILE.json",
        help="train a model built from this layer list (cnn.spec, as the Build page exports it) under the --model name",
    )
    train.add_argument(
        "--job",
        metavar="RUN_DIR",
        help="train the run described by RUN_DIR/config.json (how the dashboard starts its workers)",
    )
    train.add_argument("--epochs", type=_positive_int)
    train.add_argument("--batch-size", type=_positive_int)
    train.add_argument("--learning-rate", type=_positive_float)
    train.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None)
    train.add_argument(
        "--flip",
        choices=FLIPS,
        help="with --augment: a coin per image and draw, or airbench's mirror-every-other-epoch "
        "(the recipe's by default)",
    )
    train.add_argument(
        "--whiten-bias-epochs",
        type=int,
        metavar="N",
        help="fast model: train the whitening bias for the first N epochs only (the recipe's by default)",
    )
    train.add_argument("--subset", type=_positive_int, help="train on the first N training images only")
    train.add_argument(
        "--jpeg-augment",
        type=float,
        metavar="SHARE",
        help="share of training images re-encoded as JPEG (0-1; the recipe's by default)",
    )
    train.add_argument(
        "--jpeg-quality", type=_quality_range, metavar="LOW:HIGH", help="range of the re-encoding quality, e.g. 60:95"
    )
    train.add_argument("--data-dir")
    train.add_argument(
        "--sample",
        action="store_true",
        help="train on the bundled 1,000-image sample (last --val-size validate, default 200): "
        "for trying, not for real accuracy",
    )
    train.add_argument("--out", help="PATH.keras (default: models/MODEL.keras)")
    train.add_argument(
        "--run-dir",
        help="run folder for history and checkpoints (default: runs/STEM, runs/ being CNN_RUNS_DIR when set)",
    )
    train.add_argument("--seed", type=int)
    train.add_argument("--resume", action="store_true", help="continue the run folder's checkpoint")
    train.add_argument(
        "--mixed-precision",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bf16 compute (default: on when the CPU has native bf16, else float32)",
    )
    train.add_argument("--val-size", type=int, help="the last N training images validate (default 5000)")
    train.add_argument("--download", action="store_true", help="download CIFAR-10 if it is not found")
    train.add_argument(
        "--strategy",
        choices=STRATEGIES,
        help="train with tf.distribute: on this machine's GPUs (or --cpu-devices), or on the "
        "workers of TF_CONFIG; --batch-size stays the global batch",
    )
    train.add_argument(
        "--cpu-devices",
        type=_positive_int,
        metavar="N",
        help="with --strategy mirrored on a machine without GPUs: split its CPU into N devices",
    )

    evaluate = commands.add_parser("evaluate", help="accuracy, classification report, confusion matrix")
    evaluate.add_argument("model")
    evaluate.add_argument("--data-dir")
    evaluate.add_argument("--split", choices=("test", "val"), default="test")
    evaluate.add_argument("--indices", type=_index_range, help="START:STOP of the split")
    evaluate.add_argument("--json", action="store_true")
    evaluate.add_argument(
        "--as-jpeg",
        type=_jpeg_quality,
        metavar="QUALITY",
        help="re-encode the images as JPEG first (e.g. 75, like the shared test copy's 1000-9999)",
    )
    evaluate.add_argument(
        "--record",
        action="store_true",
        help="store the model's predictions on test and validation beside it (NAME.predictions.npz, "
        "which the dashboard draws from) and the test figures (exact 0:1000, whole set) "
        "in its sidecar",
    )

    predict = commands.add_parser("predict", help="top-k classes of image files or http(s) URLs")
    predict.add_argument("model")
    predict.add_argument("sources", nargs="+", metavar="SOURCE")
    predict.add_argument("--top", type=_positive_int, default=3)
    predict.add_argument("--policy", choices=("squash", "center_crop"), default="squash")
    predict.add_argument("--json", action="store_true")

    latency = commands.add_parser("latency", help="how long one image takes through the model (p50, p95)")
    latency.add_argument("model")
    latency.add_argument("--runs", type=_positive_int, default=200)
    latency.add_argument(
        "--record",
        action="store_true",
        help="write the figures to the model's sidecar (the Predict page preselects the most "
        "accurate model whose p50 is within 10 ms)",
    )

    info = commands.add_parser("info", help="the model's sidecar summary")
    info.add_argument("model")
    return parser


# ---------------------------------------------------------------- commands


def _models_dir(args) -> Path | None:
    return Path(args.models_dir) if args.models_dir else None


def cmd_models(args) -> int:
    """The zoo (name, parameters, description), then each saved model: usable, or unusable and why."""
    from cnn.artifacts import default_models_dir, scan_models
    from cnn.models import count_parameters
    from cnn.zoo import ZOO

    for entry in ZOO.values():
        print(f"{entry.name:15s} {count_parameters(entry.build()):>10,d}  {entry.description}")
    folder = _models_dir(args) or default_models_dir()
    saved = scan_models(folder)
    print(f"\nSaved models in {folder}:" if saved else f"\nNo saved model in {folder}.")
    for entry in saved:
        print(f"  {entry.describe()}")
    return 0


def cmd_train(args) -> int:
    """Train one run: take its locks, wait for a training slot, train, save, record how it ended."""
    from cnn import jobs, runs

    if args.job:  # started by the dashboard, which prepared the folder and handed over its locks
        left_out = {"sample": False, "resume": False}  # the on/off flags without a --no- form; the rest: None
        given = [flag for flag in SETTINGS_A_JOB_READS if getattr(args, flag) is not left_out.get(flag)]
        if given:
            raise UserError(
                "--job takes every setting from RUN_DIR/config.json: give it no other training "
                f"settings (got --{given[0].replace('_', '-')})."
            )
        files = runs.RunFiles(Path(args.job))
        request = runs.RunRequest.read(files)
        locks = runs.inherited_locks(files.folder, request.out_path)
    else:
        request, run_dir = train_request_from_flags(args)
        files, locks = runs.RunFiles(run_dir), None
        if not keeps_the_run_folder(request.config):
            return train_beside_the_chief(request, files, download=args.download)
    prepared = locks is not None
    with locks or runs.acquire_locks(files.folder, request.out_path):
        if not prepared:
            jobs.prepare_run(files, request)
        with runs.WorkerRecord(files) as record, runs.Heartbeat(files):
            slot = jobs.wait_for_slot(files, request, record, on_wait=_print_queue_position)
            if slot is None:
                record.finish("cancelled", jobs.CANCELLED_MESSAGE)
                print(f"cancelled: {jobs.CANCELLED_MESSAGE}", file=sys.stderr)
                return EXIT_SOME_FAILED
            try:
                return train_in_slot(request, files, record, download=args.download)
            finally:
                os.close(slot)


# `train` flags whose value is the TrainConfig setting of the same name, as given (None: the recipe's).
FLAGS_NAMED_AS_SETTINGS = (
    "epochs",
    "batch_size",
    "learning_rate",
    "augment",
    "subset",
    "seed",
    "data_dir",
    "jpeg_augment",
    "jpeg_quality",
    "flip",
    "whiten_bias_epochs",
    "strategy",
    "cpu_devices",
)


# What `train --job` reads from RUN_DIR/config.json, so it refuses these flags.
SETTINGS_A_JOB_READS = (
    "model",
    "spec",
    "out",
    "run_dir",
    "val_size",
    "mixed_precision",
    "sample",
    "resume",
    *FLAGS_NAMED_AS_SETTINGS,
)


def train_request_from_flags(args) -> tuple:
    """The RunRequest and run folder that the command line's flags describe."""
    from cnn.artifacts import check_model_name, default_models_dir
    from cnn.data import SAMPLE_VAL_SIZE
    from cnn.hardware import cpu_has_native_bf16
    from cnn.runs import RunRequest, run_dir_for
    from cnn.spec import read_spec_file
    from cnn.training import TrainConfig

    if not args.model:
        raise UserError("train needs --model NAME (or --job RUN_DIR).")
    config = TrainConfig.for_model(
        args.model,
        spec=read_spec_file(args.spec) if args.spec else None,
        use_sample=args.sample or None,
        val_size=SAMPLE_VAL_SIZE if args.sample and args.val_size is None else args.val_size,
        mixed_precision=cpu_has_native_bf16() if args.mixed_precision is None else args.mixed_precision,
        **{name: getattr(args, name) for name in FLAGS_NAMED_AS_SETTINGS},
    )
    out = Path(args.out) if args.out else Path(args.models_dir or default_models_dir()) / f"{args.model}.keras"
    if out.suffix != ".keras":
        raise UserError(f"--out must name a .keras file, not {out.name!r}.")
    check_model_name(out.stem)  # before training, not after: the model could not be saved under it
    run_dir = Path(args.run_dir) if args.run_dir else run_dir_for(out)
    return RunRequest(config=config.to_dict(), out_path=str(out), resume=args.resume, argv=list(args.argv)), run_dir


def keeps_the_run_folder(config: dict) -> bool:
    """Whether this process owns the run folder: always, except on a multi-worker worker that is not the chief."""
    from cnn.distribute import is_chief_task

    # is_chief_task checks TF_CONFIG: a bad one is refused before anything is written.
    return config.get("strategy") != "multiworker" or is_chief_task()


def train_beside_the_chief(request, files, *, download: bool = False) -> int:
    """A multi-worker run's other worker: trains in step with the chief, which alone keeps the run.

    It takes none of the run's locks, no training slot (it is part of the chief's run) and
    writes nothing in the run folder: its run files go to a temporary folder
    (`cnn.distribute.worker_run_folder`), and the chief saves the model.
    """
    from cnn.training import TrainConfig, train

    config = TrainConfig(**request.config)
    data = load_training_data(config, download=download)
    result = train(config, data, files.folder, resume=request.resume, verbose=1 if sys.stdout.isatty() else 2)
    print(
        f"worker (not the chief) {'stopped early' if result.stopped_early else 'finished'}: "
        f"{_run_summary(result, config)}; the chief saves the model"
    )
    return 0


def _run_summary(result, config) -> str:
    """Epochs, time and validation accuracy of a finished run (with its loss on several workers, to compare them)."""
    accuracy = (
        "no validation images" if result.val_accuracy is None else f"validation accuracy {result.val_accuracy:.4f}"
    )
    if result.workers > 1 and result.val_loss is not None:
        accuracy += f", loss {result.val_loss:.6f}"
    return f"{result.epochs_done}/{config.epochs} epochs in {result.wall_time_s / 60:.1f} min; {accuracy}"


def _print_queue_position(position: int) -> None:
    from cnn.jobs import max_workers, ordinal

    print(
        f"waiting for a training slot: {ordinal(position)} in line ({max_workers()} at once on this machine; "
        "CNN_MAX_WORKERS sets it)",
        file=sys.stderr,
        flush=True,
    )


def load_training_data(config, *, download: bool = False):
    """The data a run trains on: the full CIFAR-10, or the bundled sample when its config says so."""
    from cnn.data import load_cifar10, load_sample_for_training

    if config.use_sample:
        return load_sample_for_training(config.val_size)
    return load_cifar10(config.data_dir, val_size=config.val_size, download=download)


def train_in_slot(request, files, record, *, download: bool = False) -> int:
    """The run itself, once it holds a training slot: load the data, train, save the model, record the end."""
    import time

    from cnn.artifacts import save_model
    from cnn.jobs import STARTING_MESSAGE
    from cnn.runs import NOT_STARTED_MESSAGE
    from cnn.training import TrainConfig, train

    record.phase("starting", STARTING_MESSAGE, slot_since=time.time())
    config = TrainConfig(**request.config)
    # The other workers of a multi-worker run wait for this one: it trains, and a Stop stops them all at once.
    alone = config.strategy != "multiworker"
    data = None if alone and files.stop_flag.exists() else load_training_data(config, download=download)
    if data is not None:
        import keras  # noqa: F401 - the slow import happens here, so a Stop pressed meanwhile is seen below
    if alone and files.stop_flag.exists():  # a Stop while it started up: nothing was trained
        record.finish("stopped", NOT_STARTED_MESSAGE)
        print(f"stopped: {NOT_STARTED_MESSAGE}")
        return 0
    result = train(
        config, data, files.folder, resume=request.resume, clear_stop=False, verbose=1 if sys.stdout.isatty() else 2
    )
    out = Path(request.out_path)
    sidecar = build_sidecar(result, data, request.argv)
    if request.owner:
        from cnn.classroom import OWNER_FIELD

        sidecar[OWNER_FIELD] = request.owner
    # A built model's test 0-999 figure, for the Build page's leaderboard (a sample run trained on those images).
    if config.spec is not None and not config.use_sample:
        from cnn.data import CLEAN_TEST_STOP
        from cnn.evaluation import evaluate

        sidecar["metrics"].update(clean_test_metrics(evaluate(result.model, data.test.subset(0, CLEAN_TEST_STOP))))
    save_model(result.model, out, sidecar)
    state = "stopped" if result.stopped_early else "finished"
    summary = f"{_run_summary(result, config)}; saved {out} and {out.with_suffix('.json').name}"
    record.finish(state, summary, epoch=result.epochs_done)
    print(
        f"{'chief ' if result.workers > 1 else ''}{'stopped early' if result.stopped_early else 'finished'}: {summary}"
    )
    return 0


def build_sidecar(result, data, argv: list[str]) -> dict:
    """The sidecar of a freshly trained model (test metrics come later, with `evaluate --record`)."""
    from cnn.models import count_parameters
    from cnn.zoo import get_entry

    return {
        "model": result.config.model,
        "description": get_entry(result.config.model, result.config.spec).description,
        "config": result.config.to_dict(),
        "command": "python -m cnn " + " ".join(shlex.quote(part) for part in argv),
        "epochs": result.epochs_done,
        "stopped_early": result.stopped_early,
        "wall_time_s": round(result.wall_time_s, 1),
        "hardware": result.hardware,
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "parameters": count_parameters(result.model),
        "history": result.history,
        "metrics": {
            "val_accuracy": result.val_accuracy,
            "val_loss": result.val_loss,
            "val_images": len(data.val),
            "train_images": result.config.subset or len(data.train),
        },
        "data": {
            "source": data.identity,
            "provenance": (
                f"bundled sample of CIFAR-10 test images 0-999; validation = its last {len(data.val)} images"
                if result.config.use_sample
                else "CIFAR-10 python layout; validation = last "
                f"{len(data.val)} training images; test 0-999 exact, 1000-9999 JPEG-derived in the shared copy"
            ),
        },
    }


def _load(args):
    from cnn.artifacts import load_model

    return load_model(args.model, _models_dir(args))


def cmd_evaluate(args) -> int:
    from cnn.data import load_split_or_sample
    from cnn.evaluation import evaluate

    model, _ = _load(args)
    if args.record:
        evaluation, source = record_test_figures(args, model)
    else:
        split, source = load_split_or_sample(args.data_dir, args.split)
        if args.indices:
            split = split.subset(*args.indices)
        if args.as_jpeg:
            from cnn.data import jpeg_copy

            split = jpeg_copy(split, quality=args.as_jpeg)
        evaluation = evaluate(model, split)
    if args.json:
        print(json.dumps({**evaluation.to_json(), "data": source}))
    else:
        from cnn import CLASS_NAMES

        print(
            f"{evaluation.split} ({source}): accuracy {evaluation.accuracy:.4f} on {evaluation.n} images, "
            f"loss {evaluation.loss:.4f}"
        )
        for name in CLASS_NAMES:
            row = evaluation.class_metrics[name]
            print(
                f"  {name:11s} precision {row['precision']:.2f}  recall {row['recall']:.2f}  f1 {row['f1-score']:.2f}"
            )
    return 0


def clean_test_metrics(clean) -> dict:
    """The sidecar's figures of an evaluation on the exact test images 0-999."""
    return {"test_clean_accuracy": clean.accuracy, "test_clean_images": clean.n, "test_clean_split": clean.split}


def record_test_figures(args, model):
    """`evaluate --record`: the model's predictions on test (and validation, with the full data) stored beside
    it, and the test figures drawn from them written to its sidecar. Returns (evaluation of the test set, source)."""
    from cnn.artifacts import read_sidecar, resolve_model_path
    from cnn.data import CLEAN_TEST_STOP, describe_test_part
    from cnn.evaluation import Evaluation, predict_split, store_predictions

    if args.split != "test" or args.indices or args.as_jpeg:
        raise UserError("--record stores the test figures: use it with --split test, no --indices or --as-jpeg.")
    path = resolve_model_path(args.model, Path(args.models_dir) if args.models_dir else None)
    record = read_sidecar(path)
    splits, source = evaluated_splits(args.data_dir, record)
    answers = {name: predict_split(model, split, progress=_progress_printer(name)) for name, split in splits.items()}
    test = answers["test"]
    clean_split = splits["test"].subset(0, CLEAN_TEST_STOP)
    clean = Evaluation.from_predictions(test.subset(0, CLEAN_TEST_STOP), describe_test_part(clean_split))
    whole = (
        Evaluation.from_predictions(test, describe_test_part(splits["test"])) if len(test) > CLEAN_TEST_STOP else None
    )
    metrics = dict(record.get("metrics", {}))
    new = clean_test_metrics(clean)
    if whole:
        new.update(test_all_accuracy=whole.accuracy, test_all_images=whole.n, test_all_split=whole.split)
    if "val" in answers:
        _note_if_changed(
            "val_accuracy",
            metrics.get("val_accuracy"),
            Evaluation.from_predictions(answers["val"], "val").accuracy,
            updated=False,
        )
    for key in ("test_clean_accuracy", "test_all_accuracy"):
        if key in new:
            _note_if_changed(key, metrics.get(key), new[key], updated=True)
    metrics.update(new)
    store_predictions(path, answers, source, metrics=metrics, test_evaluation=(whole or clean).to_json())
    return whole or clean, source


def evaluated_splits(data_dir, record: dict) -> tuple[dict, str]:
    """{"test": ..., "val": ...} of the full data (validation cut as the model was trained), or the bundled
    sample's test images 0-999 alone; with a sentence saying which."""
    from cnn.data import VALIDATION_SIZE, load_cifar10, load_split_or_sample
    from cnn.errors import DataError

    val_size = (record.get("config") or {}).get("val_size") or VALIDATION_SIZE
    try:
        data = load_cifar10(data_dir, val_size=val_size)
    except DataError:
        if data_dir:
            raise
        test, source = load_split_or_sample(None, "test")
        return {"test": test}, source
    return {"test": data.test, "val": data.val}, data.identity


def _progress_printer(split_name: str):
    """progress(done, total) that prints a line on stderr at every tenth of the split."""
    printed = set()

    def report(done: int, total: int) -> None:
        tenth = done * 10 // max(total, 1)
        if tenth not in printed:
            printed.add(tenth)
            print(f"{split_name}: {done:,}/{total:,} images", file=sys.stderr, flush=True)

    return report


def _note_if_changed(key: str, recorded, measured: float, *, updated: bool) -> None:
    """Say on stderr when a recorded figure differs from what the stored predictions give."""
    if recorded is not None and recorded != measured:
        action = "the sidecar now records the new value" if updated else "the sidecar keeps the recorded value"
        print(
            f"note: {key} was recorded as {recorded:.4f}; the predictions give {measured:.4f} ({action})",
            file=sys.stderr,
        )


def cmd_predict(args) -> int:
    from cnn.inference import Predictor

    model, _ = _load(args)
    predictor = Predictor(model)
    results = [predict_source(predictor, source, args.top, args.policy) for source in args.sources]
    if args.json:
        print(json.dumps(results))
    else:
        for result in results:
            if "error" in result:
                print(f"{result['source']}: error: {result['error']}")
            else:
                ranked = ", ".join(f"{row['class']} {row['probability']:.3f}" for row in result["top"])
                print(f"{result['source']}: {ranked}")
    return EXIT_SOME_FAILED if any("error" in result for result in results) else 0


def predict_source(predictor, source: str, top: int, policy: str) -> dict:
    """Top-k for one file or URL; a failure becomes {"source", "error"} and never stops the others."""
    from cnn.images import decode_image

    try:
        image = decode_image(read_source(source))
        ranked = predictor.top([image], k=top, policy=policy)[0]
    except UserError as error:
        return {"source": source, "error": str(error)}
    return {"source": source, "top": [{"class": row.class_name, "probability": row.probability} for row in ranked]}


def read_source(source: str) -> bytes:
    """Bytes of an image file or an http(s) URL; every other scheme (file:, ftp:, ...) is refused."""
    from urllib.parse import urlsplit

    scheme = urlsplit(source).scheme.lower()
    if scheme in ("http", "https"):
        from cnn.fetch import fetch_url

        return fetch_url(source)
    if scheme and len(scheme) > 1:  # a one-letter "scheme" is a Windows drive
        raise UserError(f"Only image files and http(s) URLs are accepted, not {scheme}: URLs.")
    path = Path(source)
    if not path.is_file():
        raise UserError(f"No such image file: {source}")
    from cnn.images import MAX_BYTES

    if path.stat().st_size > MAX_BYTES:
        raise UserError(f"{source} is larger than {MAX_BYTES // 1_000_000} MB.")
    return path.read_bytes()


def cmd_info(args) -> int:
    """The verified sidecar's summary; a model that cannot be used is one plain error line."""
    from cnn.artifacts import resolve_model_path, verified_sidecar

    path = resolve_model_path(args.model, _models_dir(args))
    sidecar = verified_sidecar(path)
    print(f"{path.name}: {sidecar.description or sidecar.model}")
    print(
        f"  parameters {sidecar.parameters or 0:,}, epochs {sidecar.epochs}, "
        f"training {(sidecar.wall_time_s or 0) / 60:.1f} min on {sidecar.hardware}"
    )
    print(f"  command: {sidecar.command}")
    for key, value in sidecar.metrics.to_dict().items():
        print(f"  {key}: {value:.4f}" if isinstance(value, float) else f"  {key}: {value}")
    print(f"  sha256 {sidecar.sha256} (verified)")
    return 0


def cmd_latency(args) -> int:
    """One image's answer time through the model; with --record, written to its sidecar."""
    from cnn.artifacts import read_sidecar, resolve_model_path, update_sidecar
    from cnn.hardware import describe_hardware
    from cnn.inference import PREDICT_BUDGET_MS, Predictor, single_image_latency

    model, _ = _load(args)
    latency = single_image_latency(Predictor(model), runs=args.runs)
    machine = f"{describe_hardware()}, load average {os.getloadavg()[0]:.2f}"
    verdict = "within" if latency.p50_ms <= PREDICT_BUDGET_MS else "over"
    print(
        f"{args.model}: one image p50 {latency.p50_ms:.2f} ms, p95 {latency.p95_ms:.2f} ms over {latency.runs} "
        f"runs ({verdict} the Predict page's {PREDICT_BUDGET_MS:.0f} ms); {machine}"
    )
    if args.record:
        path = resolve_model_path(args.model, _models_dir(args))
        metrics = {
            **read_sidecar(path).get("metrics", {}),
            "latency_p50_ms": round(latency.p50_ms, 3),
            "latency_p95_ms": round(latency.p95_ms, 3),
            "latency_measured_on": machine,
        }
        update_sidecar(path, metrics=metrics)
        print(f"recorded in {path.stem}.json")
    return 0


COMMANDS = {
    "models": cmd_models,
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "predict": cmd_predict,
    "latency": cmd_latency,
    "info": cmd_info,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.argv = argv  # recorded in the sidecar as the exact training command
    try:
        from cnn.artifacts import tidy_models_folder

        tidy_models_folder(_models_dir(args))  # finish a save that was killed, delete its leftovers
        return COMMANDS[args.command](args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted: the run folder keeps its last checkpoint; use --resume to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
