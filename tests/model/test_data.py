import numpy as np
import pytest

from app.core.decode import decode_rgb
from model.data import load_dataset, split_train_val
from model.errors import DataError
from tests.model.conftest import (
    CLASSES,
    synthetic_images,
    write_cifar_python,
    write_image_folder,
    write_image_zip,
)


@pytest.fixture(scope="module")
def images_labels():
    return synthetic_images(10)


def test_cifar_python_batches_round_trip(tmp_path, images_labels):
    images, labels = images_labels
    write_cifar_python(tmp_path / "cifar-10-batches-py", images, labels)
    data = load_dataset(tmp_path)  # the parent folder is accepted too
    assert data.classes == CLASSES
    np.testing.assert_array_equal(data.images, images)
    np.testing.assert_array_equal(data.labels, labels)
    assert len(load_dataset(tmp_path / "cifar-10-batches-py", "test")) == 6


def test_image_folder_directory_and_zip_agree(tmp_path, images_labels):
    images, labels = images_labels
    write_image_folder(tmp_path / "folder", "train", images, labels)
    write_image_zip(tmp_path / "set.zip", "train", images, labels)
    from_dir = load_dataset(tmp_path / "folder")
    from_zip = load_dataset(tmp_path / "set.zip")
    assert from_dir.classes == from_zip.classes == CLASSES
    np.testing.assert_array_equal(from_dir.images, from_zip.images)
    np.testing.assert_array_equal(np.sort(from_zip.labels), np.sort(labels))
    # PNG is lossless: every generated image comes back exactly.
    assert {img.tobytes() for img in from_zip.images} == {img.tobytes() for img in images}


def test_missing_split_is_a_clear_error(tmp_path, images_labels):
    write_image_folder(tmp_path, "train", *images_labels)
    with pytest.raises(DataError, match=r"test/<class>/ in .* \(it holds: train\)"):
        load_dataset(tmp_path, "test")
    write_image_zip(tmp_path / "set.zip", "train", *images_labels)
    with pytest.raises(DataError, match=r"\(it holds: train\)"):
        load_dataset(tmp_path / "set.zip", "test")
    write_cifar_python(tmp_path / "py", *images_labels)
    (tmp_path / "py" / "test_batch").unlink()
    with pytest.raises(DataError, match="no test split: test_batch missing"):
        load_dataset(tmp_path / "py", "test")


def test_missing_or_unreadable_data_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no data at .*nope.zip: give a CIFAR-10 python directory"):
        load_dataset(tmp_path / "nope.zip")
    (tmp_path / "junk.zip").write_text("not a zip")
    with pytest.raises(DataError, match="is not a zip archive"):
        load_dataset(tmp_path / "junk.zip")


def test_an_empty_validation_split_is_refused():
    labels = np.repeat(np.arange(10), 3)
    with pytest.raises(DataError, match="5 images over 10 classes is empty"):
        split_train_val(labels, 5)  # 0 per class
    train, val = split_train_val(labels, 20)
    assert len(val) == 20 and len(train) == 10
    train, val = split_train_val(labels, 5000)  # small data: all of it is held out
    assert len(val) == 30 and len(train) == 0


def test_other_sizes_are_resized_to_native(tmp_path):
    from PIL import Image

    buf = tmp_path / "big.jpg"
    Image.new("RGBA", (100, 60), (10, 200, 30, 255)).save(buf.with_suffix(".png"))
    pixels = decode_rgb(buf.with_suffix(".png").read_bytes(), 32)
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8
    assert tuple(pixels[16, 16]) == (10, 200, 30)


def test_validation_split_is_deterministic_stratified_and_disjoint():
    labels = np.repeat(np.arange(10), 100)
    train_a, val_a = split_train_val(labels, 200, seed=0)
    train_b, val_b = split_train_val(labels, 200, seed=0)
    np.testing.assert_array_equal(val_a, val_b)
    assert len(val_a) == 200 and len(train_a) == 800
    assert not set(train_a) & set(val_a)
    assert np.bincount(labels[val_a]).tolist() == [20] * 10
    assert not np.array_equal(split_train_val(labels, 200, seed=1)[1], val_a)
