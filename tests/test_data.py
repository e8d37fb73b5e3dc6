"""cnn.data: the loader, its errors, the bundled sample, and the real data's known facts."""

import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import make_synthetic_cifar

from cnn.data import describe_test_part, load_cifar10, load_sample, load_sample_for_training, one_hot
from cnn.errors import DataError


def test_synthetic_folder_loads_with_a_validation_split(synthetic_cifar):
    data = load_cifar10(synthetic_cifar, val_size=20)
    assert data.train.images.shape == (180, 32, 32, 3) and data.train.images.dtype == np.uint8
    assert len(data.val) == 20 and len(data.test) == 50
    assert data.val.labels.tolist() == (np.arange(40) % 10)[-20:].tolist()


def test_archive_loads_without_extracting(synthetic_cifar, tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(synthetic_cifar, arcname="cifar-10-batches-py")
    data = load_cifar10(archive, val_size=10)
    assert len(data.train) == 190


def copy_folder(source, target):
    target.mkdir()
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def test_missing_batch_is_named(synthetic_cifar, tmp_path):
    folder = copy_folder(synthetic_cifar, tmp_path / "c")
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3 is missing"):
        load_cifar10(folder, val_size=10)


def test_corrupt_batch_is_named(synthetic_cifar, tmp_path):
    folder = copy_folder(synthetic_cifar, tmp_path / "c")
    (folder / "test_batch").write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match="test_batch is corrupt"):
        load_cifar10(folder, val_size=10)


def test_bad_labels_and_shapes_are_refused(synthetic_cifar, tmp_path):
    folder = copy_folder(synthetic_cifar, tmp_path / "c")
    bad = {b"labels": [11] * 4, b"data": np.zeros((4, 3072), np.uint8)}
    (folder / "data_batch_1").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(DataError, match="labels must be 0-9"):
        load_cifar10(folder, val_size=10)
    bad = {b"labels": [1] * 4, b"data": np.zeros((4, 100), np.uint8)}
    (folder / "data_batch_1").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(DataError, match="3072"):
        load_cifar10(folder, val_size=10)


def test_missing_folder_and_nothing_found(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="does not exist"):
        load_cifar10(tmp_path / "nowhere")
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    monkeypatch.setattr("cnn.data.KERAS_CACHE", tmp_path / "no-cache")
    with pytest.raises(DataError, match="CIFAR-10 was not found"):
        load_cifar10()


def test_environment_variable_is_used(synthetic_cifar, monkeypatch):
    monkeypatch.setenv("CIFAR10_DIR", str(synthetic_cifar))
    assert load_cifar10(val_size=10).source == str(synthetic_cifar)


def test_validation_size_out_of_range(synthetic_cifar):
    with pytest.raises(DataError, match="validation size"):
        load_cifar10(synthetic_cifar, val_size=500)


def test_bundled_sample_is_the_exact_first_test_images():
    sample = load_sample()
    assert sample.images.shape == (1000, 32, 32, 3) and sample.images.dtype == np.uint8
    assert sample.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert np.bincount(sample.labels, minlength=10).min() > 50


def test_test_parts_are_named_honestly():
    sample = load_sample()
    assert "exact" in describe_test_part(sample.subset(0, 1000))
    assert "JPEG" in describe_test_part(sample.subset(0, 1000).__class__(sample.images, sample.labels, "test[0:10000]"))


def test_one_hot():
    assert one_hot(np.array([0, 9])).tolist()[1][9] == 1.0


@pytest.mark.realdata
def test_real_counts_and_first_frog(real_cifar):
    train = np.concatenate([real_cifar.train.labels, real_cifar.val.labels])
    assert len(train) == 50_000 and len(real_cifar.test) == 10_000
    assert np.bincount(train).tolist() == [5000] * 10
    assert np.bincount(real_cifar.test.labels).tolist() == [1000] * 10
    assert real_cifar.train.labels[0] == 6  # frog
    assert real_cifar.train.images[0, 0, 0].tolist() == [59, 62, 63]
    assert len(real_cifar.val) == 5000


@pytest.mark.realdata
def test_sample_matches_the_real_test_images(real_cifar):
    sample = load_sample()
    assert np.array_equal(sample.images, real_cifar.test.images[:1000])
    assert np.array_equal(sample.labels, real_cifar.test.labels[:1000])


def test_the_sample_as_training_data_validates_on_its_last_images():
    sample, data = load_sample(), load_sample_for_training(200)
    assert (len(data.train), len(data.val)) == (800, 200) and data.source.startswith("bundled sample")
    assert np.array_equal(data.val.images, sample.images[800:]) and np.array_equal(data.val.labels, sample.labels[800:])
    assert np.array_equal(data.train.images, sample.images[:800])
    with pytest.raises(DataError, match="between 1 and 999"):
        load_sample_for_training(1000)


def test_the_data_is_named_by_its_content_not_its_place(synthetic_cifar, tmp_path):
    import shutil

    copy = shutil.copytree(synthetic_cifar, tmp_path / "elsewhere" / "cifar-10-batches-py")
    here, there = load_cifar10(synthetic_cifar, val_size=20), load_cifar10(copy, val_size=50)
    assert here.identity == there.identity  # another folder, another validation cut: the same data
    assert str(synthetic_cifar) not in here.identity and "200 training and 50 test images" in here.identity
    changed = make_synthetic_cifar(tmp_path / "other" / "cifar-10-batches-py", per_batch=41)
    assert load_cifar10(changed, val_size=20).identity != here.identity


def test_committed_sidecars_record_no_path_of_a_machine():
    import re

    root = Path(__file__).resolve().parent.parent
    sidecars = sorted(root.glob("models/*.json")) + sorted(root.glob("docs/experiments/*_sidecar.json"))
    assert sidecars
    for path in sidecars:
        assert not re.search(r"(?<![\w.])/(work|root|home|tmp|Users)/", path.read_text()), path.name


def test_jpeg_copy_of_a_split_keeps_labels_and_shapes(synthetic_cifar):
    from cnn.data import jpeg_copy

    split = load_cifar10(synthetic_cifar, val_size=20).val
    copy = jpeg_copy(split, quality=75)
    assert copy.images.shape == split.images.shape and np.array_equal(copy.labels, split.labels)
    assert "JPEG q75" in copy.name and not np.array_equal(copy.images, split.images)
