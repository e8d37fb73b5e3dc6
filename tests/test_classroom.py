"""cnn.classroom: the teacher key, read-only shipped models, students' own names, and the classroom limits."""

import pytest

from cnn import classroom
from cnn.artifacts import save_model
from cnn.errors import UserError
from cnn.training import TrainConfig


def fake_model(folder, name, **sidecar):
    """A model file with a sidecar (the content does not matter to the rules)."""

    class Saveable:
        def save(self, path):
            path.write_bytes(b"model")

    save_model(Saveable(), folder / f"{name}.keras", {"model": "base", **sidecar})
    return folder / f"{name}.keras"


def test_the_teacher_key_comes_from_the_environment_or_the_secrets(monkeypatch):
    monkeypatch.delenv(classroom.TEACHER_KEY_ENV, raising=False)
    assert classroom.expected_teacher_key() is None
    assert classroom.expected_teacher_key("  from-secrets ") == "from-secrets"
    monkeypatch.setenv(classroom.TEACHER_KEY_ENV, "from-env")
    assert classroom.expected_teacher_key("from-secrets") == "from-env"
    assert classroom.teacher_key_matches("from-env", "from-env")
    for wrong in ("", None, "from-en", "from-env2", "FROM-ENV"):
        assert not classroom.teacher_key_matches(wrong, "from-env")
    assert not classroom.teacher_key_matches("", None) and not classroom.teacher_key_matches("x", "")


def test_shipped_models_are_read_only_without_the_key(models_dir):
    shipped = fake_model(models_dir, "base")
    with pytest.raises(UserError, match="ships with the dashboard: only the teacher"):
        classroom.check_output(shipped, owner="me", teacher=False)
    with pytest.raises(UserError, match="ships with the dashboard"):  # also before it exists here
        classroom.check_output(models_dir / "fast.keras", owner="me", teacher=False)
    with pytest.raises(UserError, match="tick 'replace'"):
        classroom.check_output(shipped, owner="me", teacher=True)
    classroom.check_output(shipped, owner="me", teacher=True, replace=True)


def test_a_student_never_replaces_another_students_model(models_dir):
    theirs = fake_model(models_dir, "cats", made_by="them")
    by_a_shell = fake_model(models_dir, "script_run")
    mine = fake_model(models_dir, "mine", made_by="me")
    for path in (theirs, by_a_shell):
        with pytest.raises(UserError, match="was made by someone else"):
            classroom.check_output(path, owner="me", teacher=False)
    classroom.check_output(mine, owner="me", teacher=False)  # my own, again
    classroom.check_output(models_dir / "new_name.keras", owner="me", teacher=False)
    mine.unlink()  # a sidecar without its model still names its owner
    with pytest.raises(UserError, match="made by someone else"):
        classroom.check_output(mine, owner="you", teacher=False)


@pytest.mark.parametrize(
    "bad, message",
    [
        (".", "is not a model name"),
        ("", "cannot be empty"),
        ("\x00", "cannot contain control characters"),
        ("a/b", "is not a model name"),
        ("../escape", "is not a model name"),
        ("x" * 65, "at most 64 characters"),
        ("x" * 300, "at most 64 characters, not 300"),
        ("-dash", "is not a model name"),
        ("a b", "is not a model name"),
        ("é", "is not a model name"),
        ("my.model", "may use only letters, digits, _ and -"),
    ],
)
def test_odd_model_names_get_one_plain_line(bad, message, models_dir):
    with pytest.raises(UserError, match=message) as refused:
        classroom.output_path(bad)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 200


def test_names_and_owners():
    owner = classroom.new_owner_id()
    assert len(owner) == 16 and owner != classroom.new_owner_id()
    name = classroom.suggested_name("base", owner)
    assert name == f"base_{owner[:4]}" and classroom.NAME_PATTERN.fullmatch(name)
    assert classroom.output_path("my-model_2").name == "my-model_2.keras"


def test_classroom_limits_and_the_teachers(models_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_RUNS_DIR", str(tmp_path / "runs"))  # nothing may start, but if it did: not here
    classroom.check_limits(classroom.STUDENT_LIMITS.max_epochs, classroom.STUDENT_LIMITS.max_subset, teacher=False)
    with pytest.raises(UserError, match=r"teacher key raises the limits\): at most 30 epochs, not 31\.$"):
        classroom.check_limits(31, 100, teacher=False)
    with pytest.raises(UserError, match="at most 10,000 training images, not all"):
        classroom.check_limits(3, None, teacher=False)
    classroom.check_limits(31, 45_000, teacher=True)
    with pytest.raises(UserError, match="Too large for the teacher: at most 200 epochs"):
        classroom.check_limits(201, 100, teacher=True)
    config = TrainConfig.for_model("base", epochs=31, subset=100)
    with pytest.raises(UserError, match="at most 30 epochs"):  # start_run applies the rules before anything starts
        classroom.start_run(config, models_dir / "mine.keras", owner="me", teacher=False)
    with pytest.raises(UserError, match="ships with the dashboard"):
        classroom.start_run(
            TrainConfig.for_model("base", epochs=1, subset=100), models_dir / "base.keras", owner="me", teacher=False
        )
    assert not (tmp_path / "runs").exists()
