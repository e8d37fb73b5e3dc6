"""Classroom rules of the dashboard: the teacher key, read-only shipped models, model names, training limits.

The dashboard serves a whole class from one machine. Without the teacher key:
- the shipped models (the zoo's own names, `models/base.keras` ... `models/fast.keras`, the
  ones `scripts/train_zoo.sh` trains and git holds) are never replaced;
- a run saves under a name its student chooses, and never replaces a model made by another
  session (its sidecar's `made_by` differs, or it has none: made by a shell command);
- epochs and training images stay within STUDENT_LIMITS.
With the key the teacher may replace any model (ticking "replace") and gets TEACHER_LIMITS.
The command line (whoever has a shell owns the machine) is not limited.

The key comes from `CNN_TEACHER_KEY` or `teacher_key` in `.streamlit/secrets.toml`; the UI
reads it (cnn never imports Streamlit) and passes `teacher: bool` here.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from cnn.artifacts import check_model_name, default_models_dir, read_sidecar
from cnn.errors import ModelFileError, UserError
from cnn.zoo import ZOO

TEACHER_KEY_ENV = "CNN_TEACHER_KEY"
MAX_NAME_LENGTH = 64
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,%d}" % (MAX_NAME_LENGTH - 1))
OWNER_FIELD = "made_by"  # sidecar field: the id of the dashboard session that made the model


@dataclass(frozen=True)
class Limits:
    """The largest run one person may start from the dashboard."""

    max_epochs: int  # passes over the training images
    max_subset: int  # training images


STUDENT_LIMITS = Limits(max_epochs=30, max_subset=10_000)  # about a lesson's worth of CPU for the report's models
TEACHER_LIMITS = Limits(max_epochs=200, max_subset=50_000)  # anything the data allows


def limits(teacher: bool) -> Limits:
    return TEACHER_LIMITS if teacher else STUDENT_LIMITS


# ---------------------------------------------------------------- the teacher key


def expected_teacher_key(secrets_value: object = None) -> str | None:
    """The server's teacher key: `CNN_TEACHER_KEY`, else the secrets file's value; None when neither is set."""
    for candidate in (os.environ.get(TEACHER_KEY_ENV), secrets_value):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return None


def teacher_key_matches(entered: str | None, expected: str | None) -> bool:
    """Whether `entered` is the teacher key (a constant-time comparison; never true without a key set)."""
    if not expected or not entered:
        return False
    return hmac.compare_digest(entered.strip().encode("utf-8"), expected.encode("utf-8"))


# ---------------------------------------------------------------- names and owners


def new_owner_id() -> str:
    """A fresh, unguessable id for one dashboard session (recorded in the sidecars of its models)."""
    return secrets.token_hex(8)


def suggested_name(model: str, owner: str) -> str:
    """A default output name that is this session's own: `MODEL_` plus four characters of its id."""
    return f"{model}_{owner[:4]}"


def is_shipped(name: str) -> bool:
    """Whether `name` is a model that ships with the dashboard (the zoo's own names)."""
    return name in ZOO


def output_path(name: str, models_dir: Path | None = None) -> Path:
    """`models/NAME.keras` for a chosen name (letters, digits, _ and -, at most MAX_NAME_LENGTH)."""
    name = check_model_name((name or "").strip())  # the models folder's own rule (empty, NUL, length, ...)
    if not NAME_PATTERN.fullmatch(name):  # and the classroom's stricter one: no dots
        raise UserError(
            f"The model name {name[:80]!r} may use only letters, digits, _ and - (starting with a "
            f"letter or digit, at most {MAX_NAME_LENGTH} characters)."
        )
    return Path(models_dir or default_models_dir()) / f"{name}.keras"


def owner_of(out_path: Path) -> str | None:
    """Who made the model at `out_path` (its sidecar's `made_by`); None when unknown or there is none."""
    try:
        value = read_sidecar(out_path).get(OWNER_FIELD)
    except ModelFileError:
        return None
    return value if isinstance(value, str) else None


def check_output(out_path: Path, *, owner: str | None, teacher: bool, replace: bool = False) -> None:
    """Refuse, with one plain line, an output a dashboard run may not write.

    Args:
        out_path: the `.keras` file the run would save.
        owner: the id of the session starting the run (the run's own owner when resuming).
        teacher: the teacher key was entered in this session.
        replace: the teacher ticked "replace an existing model".
    """
    out_path = Path(out_path)
    name = out_path.stem
    exists = out_path.exists() or out_path.with_suffix(".json").exists()
    if teacher:
        if exists and not replace and owner_of(out_path) != owner:
            raise UserError(f"{out_path.name} exists: tick 'replace' to overwrite it, or choose another name.")
        return
    if is_shipped(name):
        raise UserError(
            f"{name} is a model that ships with the dashboard: only the teacher (with the teacher "
            "key) may replace it. Save your run under your own name."
        )
    if exists and (owner is None or owner_of(out_path) != owner):
        raise UserError(
            f"{out_path.name} was made by someone else: choose another name for your model "
            "(only the teacher may replace it)."
        )


def check_limits(epochs: int, subset: int | None, *, teacher: bool) -> None:
    """Refuse a run larger than the classroom limits (the teacher's are higher)."""
    bounds = limits(teacher)
    problems = []
    if epochs > bounds.max_epochs:
        problems.append(f"at most {bounds.max_epochs} epochs, not {epochs}")
    if subset is None or subset > bounds.max_subset:
        problems.append(f"at most {bounds.max_subset:,} training images, not {subset or 'all'}")
    if problems:
        who = "the teacher" if teacher else "a classroom run (the teacher key raises the limits)"
        raise UserError(f"Too large for {who}: " + "; ".join(problems) + ".")


# ---------------------------------------------------------------- starting a classroom run


def start_run(config, out_path: Path, *, owner: str, teacher: bool, replace: bool = False) -> Path:
    """Start a dashboard run of `config` (a TrainConfig) saving to `out_path`, within the classroom rules.

    Its run folder is `<runs>/NAME/` for `models/NAME.keras`; it waits in the machine's queue.

    Returns:
        The run folder.

    Raises:
        UserError: the run breaks a classroom rule, or its folder or output is in use.
    """
    from cnn import jobs, runs

    check_limits(config.epochs, config.subset, teacher=teacher)
    check_output(out_path, owner=owner, teacher=teacher, replace=replace)
    run_dir = runs.run_dir_for(out_path)
    request = runs.RunRequest(
        config=config.to_dict(),
        out_path=str(out_path),
        owner=owner,
        argv=jobs.equivalent_argv(config.to_dict(), out_path),
    )
    jobs.start_run(request, run_dir)
    return run_dir


def resume_run(run_dir: Path, *, teacher: bool) -> None:
    """Resume a dashboard run: it saves to its own output as its own owner, so the same rules hold."""
    from cnn import jobs, runs

    request = runs.RunRequest.read(runs.RunFiles(Path(run_dir)))
    check_output(Path(request.out_path), owner=request.owner, teacher=teacher, replace=True)
    jobs.resume_run(run_dir)
