"""Real-dataset loaders on tiny fixtures written in each dataset's exact on-disk format:
counts, label matrices (by hand), class order, images, and errors that name the file."""

from __future__ import annotations

import inspect
import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from mlrobust.config import ConfigError, DataConfig
from mlrobust.data import DATASETS, DatasetFormatError, create_dataset
from mlrobust.data.formats.voc import VOC_CLASSES
from mlrobust.experiments import build_data


@pytest.fixture(autouse=True)
def _private_bad_image_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bad_images="skip" caches its answer (see _imagecheck): in the test's folder, not ~/.cache."""
    monkeypatch.setenv("MLROBUST_CACHE_DIR", str(tmp_path / "bad-image-cache"))


def _image(path: Path, colour: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (20, 12)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def test_every_loader_is_registered() -> None:
    assert {"coco", "voc2007", "nuswide", "openimages", "cub", "cifar10", "stl10", "folder"} <= set(DATASETS)


# --- COCO ---------------------------------------------------------------------------------------

def _coco(root: Path, split: str = "val2014") -> None:
    data = {
        "images": [{"id": 9, "file_name": f"COCO_{split}_9.jpg"}, {"id": 3, "file_name": f"COCO_{split}_3.jpg"},
                   {"id": 5, "file_name": f"COCO_{split}_5.jpg"}],
        # category ids are not contiguous and not in order: columns follow the ids
        "categories": [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"}, {"id": 18, "name": "dog"}],
        "annotations": [{"image_id": 9, "category_id": 18}, {"image_id": 9, "category_id": 18, "iscrowd": 1},
                        {"image_id": 3, "category_id": 90}, {"image_id": 3, "category_id": 1}],
    }
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
    for im in data["images"]:
        _image(root / split / im["file_name"])


def test_coco_labels_class_order_and_empty_images(tmp_path: Path) -> None:
    _coco(tmp_path)
    ds = create_dataset("coco", "test", root=tmp_path, image_size=16)
    assert ds.classes == ["person", "dog", "toothbrush"]
    # rows in image-id order: 3, 5 (no annotation), 9
    assert ds.labels.tolist() == [[1, -1, 1], [-1, -1, -1], [-1, 1, -1]]
    assert [p.name for p in ds.paths] == ["COCO_val2014_3.jpg", "COCO_val2014_5.jpg", "COCO_val2014_9.jpg"]
    assert ds.info["dropped_without_annotations"] == 0
    dropped = create_dataset("coco", "test", root=tmp_path, image_size=16, keep_empty=False)
    assert len(dropped) == 2 and dropped.info["dropped_without_annotations"] == 1
    image, index = ds[2]
    assert image.dtype == torch.uint8 and image.shape == (3, 16, 16) and index == 2
    assert image[0].float().mean() > 150 and image[1].float().mean() < 60  # red, not BGR or grey


def test_coco_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="instances_val2014.json"):
        create_dataset("coco", "test", root=tmp_path, image_size=16)
    _coco(tmp_path)
    path = tmp_path / "annotations" / "instances_val2014.json"
    data = json.loads(path.read_text())
    data["annotations"].append({"image_id": 3, "category_id": 77})
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetFormatError, match=r"instances_val2014.json.*category id 77"):
        create_dataset("coco", "test", root=tmp_path, image_size=16)
    path.write_text("{not json")
    with pytest.raises(DatasetFormatError, match="not valid JSON"):
        create_dataset("coco", "test", root=tmp_path, image_size=16)
    with pytest.raises(ValueError, match="splits"):
        create_dataset("coco", "val", root=tmp_path, image_size=16)


def test_missing_and_corrupt_images_error_or_skip(tmp_path: Path) -> None:
    _coco(tmp_path)
    (tmp_path / "val2014" / "COCO_val2014_5.jpg").unlink()
    with pytest.raises(DatasetFormatError, match="COCO_val2014_5.jpg"):
        create_dataset("coco", "test", root=tmp_path, image_size=16)
    noisy = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noisy).save(tmp_path / "val2014" / "COCO_val2014_3.jpg", quality=95)
    whole = (tmp_path / "val2014" / "COCO_val2014_3.jpg").read_bytes()
    (tmp_path / "val2014" / "COCO_val2014_3.jpg").write_bytes(whole[: len(whole) // 2])  # truncated
    ds = create_dataset("coco", "test", root=tmp_path, image_size=16, bad_images="skip")
    assert len(ds) == 1 and ds.info["skipped"] == 2 and ds.labels.tolist() == [[-1, 1, -1]]
    assert {p.name for p in ds.skipped} == {"COCO_val2014_3.jpg", "COCO_val2014_5.jpg"}
    _image(tmp_path / "val2014" / "COCO_val2014_5.jpg")
    ds = create_dataset("coco", "test", root=tmp_path, image_size=16)  # corrupt file found on read
    with pytest.raises(DatasetFormatError, match="COCO_val2014_3.jpg"):
        ds[0]


# --- VOC 2007 -----------------------------------------------------------------------------------

def _voc_xml(objects: list[tuple[str, int]]) -> str:
    body = "".join(f"<object><name>{n}</name><difficult>{d}</difficult></object>" for n, d in objects)
    return f"<annotation><filename>x.jpg</filename>{body}</annotation>"


def test_voc_difficult_only_is_unknown(tmp_path: Path) -> None:
    voc = tmp_path / "VOCdevkit" / "VOC2007"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    annotations = {"000001": [("dog", 0), ("person", 1)], "000002": [("cat", 1), ("cat", 0), ("sofa", 0)]}
    for image_id, objects in annotations.items():
        (voc / "Annotations" / f"{image_id}.xml").write_text(_voc_xml(objects))
        _image(voc / "JPEGImages" / f"{image_id}.jpg")
    (voc / "ImageSets" / "Main" / "test.txt").write_text("000001\n000002\n")
    ds = create_dataset("voc2007", "test", root=tmp_path, image_size=8)
    assert ds.classes == VOC_CLASSES and len(ds) == 2
    c = {name: j for j, name in enumerate(VOC_CLASSES)}
    assert ds.labels[0, c["dog"]] == 1 and ds.labels[0, c["person"]] == 0  # difficult only: unknown
    assert ds.labels[1, c["cat"]] == 1 and ds.labels[1, c["sofa"]] == 1  # one non-difficult cat suffices
    assert (ds.labels == -1).sum() == 2 * 20 - 4
    (voc / "Annotations" / "000002.xml").write_text(_voc_xml([("unicorn", 0)]))
    with pytest.raises(DatasetFormatError, match=r"000002.xml.*unknown class 'unicorn'"):
        create_dataset("voc2007", "test", root=tmp_path, image_size=8)
    (voc / "Annotations" / "000002.xml").write_text("<annotation><object>")
    with pytest.raises(DatasetFormatError, match=r"000002.xml: malformed XML"):
        create_dataset("voc2007", "test", root=tmp_path, image_size=8)


# --- NUS-WIDE -----------------------------------------------------------------------------------

def test_nuswide_official_layout(tmp_path: Path) -> None:
    (tmp_path / "ConceptsList").mkdir()
    (tmp_path / "ConceptsList" / "Concepts81.txt").write_text("sky\nclouds\ndog\n")
    (tmp_path / "ImageList").mkdir()
    (tmp_path / "ImageList" / "TestImagelist.txt").write_text("actor\\0001_1.jpg\nzebra\\0002_2.jpg\n")
    labels_dir = tmp_path / "Groundtruth" / "TrainTestLabels"
    labels_dir.mkdir(parents=True)
    for concept, values in {"sky": "1\n0\n", "clouds": "1\n0\n", "dog": "0\n0\n"}.items():
        (labels_dir / f"Labels_{concept}_Test.txt").write_text(values)
    _image(tmp_path / "Flickr" / "actor" / "0001_1.jpg")
    _image(tmp_path / "Flickr" / "zebra" / "0002_2.jpg")
    ds = create_dataset("nuswide", "test", root=tmp_path, image_size=8)
    assert ds.classes == ["sky", "clouds", "dog"] and ds.info["layout"] == "official"
    assert ds.labels.tolist() == [[1, 1, -1], [-1, -1, -1]]
    assert ds.paths[1] == tmp_path / "Flickr" / "zebra" / "0002_2.jpg"
    assert len(create_dataset("nuswide", "test", root=tmp_path, image_size=8, keep_empty=False)) == 1
    (labels_dir / "Labels_dog_Test.txt").write_text("0\n")
    with pytest.raises(DatasetFormatError, match=r"Labels_dog_Test.txt: expected 2 lines"):
        create_dataset("nuswide", "test", root=tmp_path, image_size=8)


def test_nuswide_csv_form(tmp_path: Path) -> None:
    (tmp_path / "nus_wid_data.csv").write_text(
        "filepath,label,split_name\n"
        "images/a.jpg,\"['sky', 'dog']\",train\n"
        "images/b.jpg,[],val\n"
        "images/c.jpg,\"['clouds']\",val\n")
    for name in "abc":
        _image(tmp_path / "images" / f"{name}.jpg")
    ds = create_dataset("nuswide", "test", root=tmp_path, image_size=8)
    assert ds.classes == ["clouds", "dog", "sky"]  # no Concepts81.txt: sorted names
    assert ds.labels.tolist() == [[-1, -1, -1], [1, -1, -1]]
    assert len(create_dataset("nuswide", "train", root=tmp_path, image_size=8)) == 1
    (tmp_path / "nus_wid_data.csv").write_text("filepath,label,split_name\nimages/a.jpg,sky,train\n")
    with pytest.raises(DatasetFormatError, match=r"nus_wid_data.csv, line 2: column 'label'"):
        create_dataset("nuswide", "train", root=tmp_path, image_size=8)


# --- Open Images --------------------------------------------------------------------------------

def _openimages(root: Path) -> None:
    (root / "class-descriptions.csv").write_text("/m/01,Cat\n/m/02,Dog\n/m/03,Car\n/m/04,Tree\n")
    (root / "validation-annotations-human-imagelabels.csv").write_text(
        "ImageID,Source,LabelName,Confidence\n"
        "aaa,verification,/m/02,1\n"
        "aaa,verification,/m/01,0\n"
        "bbb,verification,/m/03,0\n"
        "bbb,crowdsource,/m/03,1\n"  # verified both ways: present wins
        "ccc,verification,/m/04,0\n")
    for image_id in ("aaa", "bbb", "ccc"):
        _image(root / "validation" / f"{image_id}.jpg")


def test_openimages_confidence_and_unknowns(tmp_path: Path) -> None:
    _openimages(tmp_path)
    ds = create_dataset("openimages", "val", root=tmp_path, image_size=8)
    assert ds.classes == ["Cat", "Dog", "Car", "Tree"] and ds.mids == ["/m/01", "/m/02", "/m/03", "/m/04"]
    assert ds.labels.tolist() == [[-1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, -1]]
    (tmp_path / "test-annotations-human-imagelabels.csv").write_text(
        "ImageID,Source,LabelName,Confidence\nzzz,verification,/m/03,1\n")
    _image(tmp_path / "test" / "zzz.jpg")
    test = create_dataset("openimages", "test", root=tmp_path, image_size=8)
    assert test.classes == ds.classes and test.labels.tolist() == [[0, 0, 1, 0]]  # same columns as val
    sub = create_dataset("openimages", "val", root=tmp_path, image_size=8, classes=["Dog", "/m/03"])
    assert sub.classes == ["Dog", "Car"] and sub.labels.tolist() == [[1, 0], [0, 1]]  # ccc has no label left
    with pytest.raises(DatasetFormatError, match="Unicorn"):
        create_dataset("openimages", "val", root=tmp_path, image_size=8, classes=["Unicorn"])
    with pytest.raises(DatasetFormatError, match=r"imagelabels.csv, line 4: already 2 images x 4 classes"):
        create_dataset("openimages", "val", root=tmp_path, image_size=8, max_label_bytes=4)
    with open(tmp_path / "validation-annotations-human-imagelabels.csv", "a") as f:
        f.write("ddd,verification,/m/99,1\n")
    with pytest.raises(DatasetFormatError, match=r"imagelabels.csv, line 7: label '/m/99'"):
        create_dataset("openimages", "val", root=tmp_path, image_size=8)


# --- CUB ----------------------------------------------------------------------------------------

# image attribute present certainty time (one line with the extra field of the real file)
CUB_ATTRIBUTE_LINES = "1 1 1 4 3.0\n1 2 0 1 2.0\n2 1 0 3 1.0\n2 2 1 4 1.0 0\n3 1 0 1 2.0\n3 2 1 2 1.0\n"


def _cub(root: Path, attribute_lines: str = CUB_ATTRIBUTE_LINES) -> Path:
    """A three-image, two-attribute CUB_200_2011 folder under ``root`` (names beside it)."""
    cub = root / "CUB_200_2011"
    (cub / "attributes").mkdir(parents=True, exist_ok=True)
    (cub / "images.txt").write_text("1 001.A/a1.jpg\n2 002.B/b1.jpg\n3 001.A/a2.jpg\n")
    (cub / "image_class_labels.txt").write_text("1 1\n2 2\n3 1\n")
    (cub / "classes.txt").write_text("1 001.A\n2 002.B\n")
    (cub / "train_test_split.txt").write_text("1 1\n2 0\n3 1\n")
    (root / "attributes.txt").write_text("1 has_bill_shape::curved\n2 has_wing_color::blue\n")
    (cub / "attributes" / "image_attribute_labels.txt").write_text(attribute_lines)
    for name in ("001.A/a1.jpg", "002.B/b1.jpg", "001.A/a2.jpg"):
        _image(cub / "images" / name)
    return cub


def test_cub_attributes_with_class_side_information(tmp_path: Path) -> None:
    cub = _cub(tmp_path)
    train = create_dataset("cub", "train", root=tmp_path, image_size=8)
    assert train.classes == ["has_bill_shape::curved", "has_wing_color::blue"]
    assert train.labels.tolist() == [[1, -1], [-1, 1]]
    assert train.class_index.tolist() == [0, 0] and train.class_names == ["001.A", "002.B"]
    test = create_dataset("cub", "test", root=cub, image_size=8)
    assert test.labels.tolist() == [[-1, 1]] and test.class_index.tolist() == [1]
    unknown = create_dataset("cub", "train", root=tmp_path, image_size=8, not_visible="unknown")
    assert unknown.labels.tolist() == [[1, 0], [0, 1]]  # certainty 1 = not visible
    sub = create_dataset("cub", "train", root=tmp_path, image_size=8, n=1, seed=3)
    assert len(sub) == 1 and sub.class_index.tolist() == [0]
    (cub / "attributes" / "image_attribute_labels.txt").write_text("1 1\n")
    with pytest.raises(DatasetFormatError, match=r"image_attribute_labels.txt, line 1"):
        create_dataset("cub", "train", root=tmp_path, image_size=8)


# --- CIFAR-10 and STL-10 ------------------------------------------------------------------------

def _cifar_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def test_cifar10_binary_and_python_agree(tmp_path: Path) -> None:
    binary, python = tmp_path / "bin" / "cifar-10-batches-bin", tmp_path / "py" / "cifar-10-batches-py"
    binary.mkdir(parents=True)
    python.mkdir(parents=True)
    (binary / "batches.meta.txt").write_text("\n".join(CIFAR_CLASSES) + "\n\n")
    with open(python / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR_CLASSES, "num_cases_per_batch": 3}, f, protocol=2)
    batches = {"test_batch": _cifar_arrays(4, 0), **{f"data_batch_{i}": _cifar_arrays(3, i) for i in range(1, 6)}}
    for name, (pixels, targets) in batches.items():
        np.concatenate([targets[:, None], pixels], 1).tofile(binary / f"{name}.bin")
        with open(python / name, "wb") as f:
            pickle.dump({"data": pixels, "labels": targets.tolist(), "batch_label": name}, f, protocol=2)
    a = create_dataset("cifar10", "train", root=tmp_path / "bin", image_size=32)
    b = create_dataset("cifar10", "train", root=tmp_path / "py", image_size=32)
    assert len(a) == len(b) == 15 and a.classes == b.classes == CIFAR_CLASSES
    assert torch.equal(a.labels, b.labels)
    first = batches["data_batch_1"]
    assert a.labels[0].tolist() == [1 if j == first[1][0] else -1 for j in range(10)]
    assert torch.equal(a[0][0], torch.from_numpy(first[0][0].reshape(3, 32, 32)))  # R, G, B planes
    assert torch.equal(a.load_batch(torch.arange(15)), b.load_batch(torch.arange(15)))
    big = create_dataset("cifar10", "test", root=tmp_path / "bin", image_size=64)
    assert big.load_batch(torch.tensor([3, 0])).shape == (2, 3, 64, 64)
    (binary / "test_batch.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(DatasetFormatError, match=r"test_batch.bin: 100 bytes"):
        create_dataset("cifar10", "test", root=tmp_path / "bin", image_size=32)


class _Evil:
    def __reduce__(self) -> tuple:
        return (print, ("pwned",))


def test_cifar10_python_refuses_code(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": _Evil(), "labels": [0]}, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR_CLASSES}, f, protocol=2)
    with pytest.raises(DatasetFormatError, match=r"test_batch: not a CIFAR-10 python batch.*print"):
        create_dataset("cifar10", "test", root=tmp_path, image_size=32)


def _stl10(root: Path, label_bytes: list[int]) -> tuple[Path, np.ndarray]:
    """An stl10_binary folder with one training image per label byte (1-based classes)."""
    folder = root / "stl10_binary"
    folder.mkdir(exist_ok=True)
    (folder / "class_names.txt").write_text("\n".join(CIFAR_CLASSES) + "\n")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (len(label_bytes), 3, 96, 96), dtype=np.uint8)  # (N, C, H, W) as read
    images.transpose(0, 1, 3, 2).tofile(folder / "train_X.bin")  # the file is column-major
    np.array(label_bytes, dtype=np.uint8).tofile(folder / "train_y.bin")
    return folder, images


def test_stl10_column_major_folds_and_unlabeled(tmp_path: Path) -> None:
    folder, images = _stl10(tmp_path, [1, 10, 3, 3, 5])
    images[:2].transpose(0, 1, 3, 2).tofile(folder / "unlabeled_X.bin")
    (folder / "fold_indices.txt").write_text("4 0 \n1 2 3\n")
    ds = create_dataset("stl10", "train", root=tmp_path, image_size=96)
    assert torch.equal(ds[1][0], torch.from_numpy(images[1]))
    assert ds.labels.argmax(1).tolist() == [0, 9, 2, 2, 4]
    fold = create_dataset("stl10", "train", root=tmp_path, image_size=96, fold=0)
    assert len(fold) == 2 and torch.equal(fold.load_batch(torch.tensor([0]))[0], torch.from_numpy(images[4]))
    assert fold.labels.argmax(1).tolist() == [4, 0]
    unlabeled = create_dataset("stl10", "unlabeled", root=tmp_path, image_size=48)
    assert len(unlabeled) == 2 and (unlabeled.labels == 0).all()
    assert unlabeled.load_batch(torch.tensor([1, 0])).shape == (2, 3, 48, 48)
    with pytest.raises(ValueError, match="fold must be in 0..1"):
        create_dataset("stl10", "train", root=tmp_path, image_size=96, fold=5)


# --- bring your own data ------------------------------------------------------------------------

def test_folder_csv_forms_and_jsonl(tmp_path: Path) -> None:
    for name in ("a", "b"):
        _image(tmp_path / "img" / f"{name}.png")
    (tmp_path / "train.csv").write_text("image,cat,dog,car\nimg/a.png,1,-1,\nimg/b.png,-1,1,0\n")
    ds = create_dataset("folder", "train", root=tmp_path, image_size=8)
    assert ds.classes == ["cat", "dog", "car"] and ds.labels.tolist() == [[1, -1, 0], [-1, 1, 0]]
    (tmp_path / "test.csv").write_text("image,labels\nimg/a.png,car;cat\nimg/b.png,\n")
    test = create_dataset("folder", "test", root=tmp_path, image_size=8, classes=["cat", "dog", "car"])
    assert test.labels.tolist() == [[1, -1, 1], [-1, -1, -1]]
    (tmp_path / "test.csv").unlink()
    (tmp_path / "test.jsonl").write_text(json.dumps({"image": "img/a.png", "labels": {"dog": 1, "car": -1}}) + "\n"
                                         + json.dumps({"image": "img/b.png", "labels": ["cat"]}) + "\n")
    test = create_dataset("folder", "test", root=tmp_path, image_size=8, classes=["cat", "dog", "car"])
    assert test.labels.tolist() == [[0, 1, -1], [1, -1, -1]]
    image, _ = test[1]
    assert image.shape == (3, 8, 8)
    with pytest.raises(DatasetFormatError, match=r"test.jsonl: unknown class\(es\) \['dog'\]"):
        create_dataset("folder", "test", root=tmp_path, image_size=8, classes=["cat", "car"])
    (tmp_path / "train.csv").write_text("image,cat\nimg/a.png,yes\n")
    with pytest.raises(DatasetFormatError, match=r"train.csv, line 2: label cells must be 1, -1, 0 or empty"):
        create_dataset("folder", "train", root=tmp_path, image_size=8)
    (tmp_path / "train.csv").write_text("path,cat\nimg/a.png,1\n")
    with pytest.raises(DatasetFormatError, match=r"train.csv: the header must start with 'image'"):
        create_dataset("folder", "train", root=tmp_path, image_size=8)
    (tmp_path / "test.jsonl").write_text('{"image": "img/a.png"}\n')
    with pytest.raises(DatasetFormatError, match=r"test.jsonl, line 1: expected"):
        create_dataset("folder", "test", root=tmp_path, image_size=8)


def test_folder_splits_share_the_train_header_order(tmp_path: Path) -> None:
    """The README's example: a one-column-per-class train.csv and a list-form test.csv."""
    for name in ("a", "b"):
        _image(tmp_path / "img" / f"{name}.jpg")
    (tmp_path / "train.csv").write_text("image,cat,dog,car\nimg/a.jpg,1,-1,\n")
    (tmp_path / "test.csv").write_text("image,labels\nimg/b.jpg,car;cat\n")
    splits = build_data(DataConfig(dataset="folder", root=str(tmp_path), image_size=16, n_train=0, n_test=0))
    assert splits.train.classes == splits.test.classes == ["cat", "dog", "car"]
    assert splits.test.labels.tolist() == [[1, -1, 1]]


def test_build_data_on_a_folder_dataset_and_bad_args(tmp_path: Path) -> None:
    for name in "abcd":
        _image(tmp_path / f"{name}.jpg")
    (tmp_path / "train.jsonl").write_text("".join(
        json.dumps({"image": f"{n}.jpg", "labels": [c]}) + "\n" for n, c in zip("abc", ["x", "y", "x"])))
    (tmp_path / "test.jsonl").write_text(json.dumps({"image": "d.jpg", "labels": ["z"]}) + "\n")
    splits = build_data(DataConfig(dataset="folder", root=str(tmp_path), image_size=16, n_train=0, n_test=0))
    assert splits.classes == ["x", "y", "z"] and len(splits.train) == 3 and len(splits.test) == 1
    sub = build_data(DataConfig(dataset="folder", root=str(tmp_path), image_size=16, n_train=2, n_test=0))
    assert len(sub.train) == 2
    with pytest.raises(ConfigError, match=r"dataset_args \['foo'\] not accepted by dataset 'folder'"):
        build_data(DataConfig(dataset="folder", root=str(tmp_path), dataset_args={"foo": 1}))
    with pytest.raises(DatasetFormatError, match="does not exist"):
        build_data(DataConfig(dataset="folder", root=str(tmp_path / "nowhere")))


def test_bad_image_policy_is_validated(tmp_path: Path) -> None:
    _image(tmp_path / "a.jpg")
    (tmp_path / "train.csv").write_text("image,cat\na.jpg,1\n")
    with pytest.raises(ValueError, match="bad_images must be one of"):
        create_dataset("folder", "train", root=tmp_path, image_size=8, bad_images="ignore")


def test_cli_describes_a_dataset_on_disk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mlrobust.cli import main

    _coco(tmp_path)
    assert main(["datasets", "coco", "--root", str(tmp_path), "--split", "test", "--arg", "keep_empty=false"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["images"] == 2 and record["dropped_without_annotations"] == 1 and record["classes"] == 3
    assert main(["datasets", "coco", "--root", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


# --- bad input: one table, each error names the file, the line (or entry) and the value ------------

def _folder_csv(text: str, file: str = "train.csv") -> Callable[[Path], tuple[str, str, dict[str, Any]]]:
    def write(root: Path) -> tuple[str, str, dict[str, Any]]:
        _image(root / "a.jpg")
        (root / file).write_text(text)
        return "folder", Path(file).stem, {}
    return write


def _coco_edit(edit: Callable[[dict[str, Any]], None]) -> Callable[[Path], tuple[str, str, dict[str, Any]]]:
    def write(root: Path) -> tuple[str, str, dict[str, Any]]:
        _coco(root)
        path = root / "annotations" / "instances_val2014.json"
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))
        return "coco", "test", {}
    return write


def _cub_lines(lines: str) -> Callable[[Path], tuple[str, str, dict[str, Any]]]:
    def write(root: Path) -> tuple[str, str, dict[str, Any]]:
        _cub(root, lines)
        return "cub", "train", {}
    return write


def _stl10_labels(label_bytes: list[int]) -> Callable[[Path], tuple[str, str, dict[str, Any]]]:
    def write(root: Path) -> tuple[str, str, dict[str, Any]]:
        _stl10(root, label_bytes)
        return "stl10", "train", {}
    return write


def _nuswide(lake: str) -> Callable[[Path], tuple[str, str, dict[str, Any]]]:
    """An official-layout NUS-WIDE train split of three images and two concepts."""
    def write(root: Path) -> tuple[str, str, dict[str, Any]]:
        (root / "ConceptsList").mkdir()
        (root / "ConceptsList" / "Concepts81.txt").write_text("sky\nlake\n")
        (root / "ImageList").mkdir()
        (root / "ImageList" / "TrainImagelist.txt").write_text("a\\1.jpg\na\\2.jpg\na\\3.jpg\n")
        labels = root / "Groundtruth" / "TrainTestLabels"
        labels.mkdir(parents=True)
        (labels / "Labels_sky_Train.txt").write_text("1\n0\n1\n")
        (labels / "Labels_lake_Train.txt").write_text(lake)
        for i in (1, 2, 3):
            _image(root / "Flickr" / "a" / f"{i}.jpg")
        return "nuswide", "train", {}
    return write


def _openimages_small_budget(root: Path) -> tuple[str, str, dict[str, Any]]:
    _openimages(root)
    return "openimages", "val", {"max_label_bytes": 8}  # 4 classes: room for 2 images, the third is refused


def _nuswide_csv_repeated_column(root: Path) -> tuple[str, str, dict[str, Any]]:
    (root / "nus_wid_data.csv").write_text("filepath,label,split_name,label\nimages/a.jpg,[],train,[]\n")
    return "nuswide", "train", {}


BAD_INPUTS = [
    ("folder csv repeated class column", _folder_csv("image,cat,dog,cat\na.jpg,1,-1,-1\n"),
     r"train.csv, line 1: column 'cat' appears twice in the header \(columns 2 and 4\)"),
    ("folder csv unnamed class column", _folder_csv("image,cat,\na.jpg,1,-1\n"),
     r"train.csv, line 1: column 3 of the header has no name"),
    ("folder csv header only", _folder_csv("image,cat,dog\n"), r"train.csv: no image listed"),
    ("folder csv 0/1 cells", _folder_csv("image,cat,dog\na.jpg,1,0\n"),
     r"train.csv: every known label is 1 .*no -1.*zero_means='unknown'"),
    ("folder jsonl label not a string", _folder_csv('{"image": "a.jpg", "labels": ["cat"]}\n'
                                                    '{"image": "a.jpg", "labels": ["cat", 3]}\n', "train.jsonl"),
     r"train.jsonl, line 2: \"labels\" must list class names \(strings\), got 3"),
    ("folder jsonl label true", _folder_csv('{"image": "a.jpg", "labels": {"cat": true}}\n', "train.jsonl"),
     r"train.jsonl, line 1: label of class 'cat' must be 1, -1 or 0, got True"),
    ("folder jsonl empty", _folder_csv("\n", "train.jsonl"), r"train.jsonl: no image listed"),
    ("coco repeated image id", _coco_edit(lambda d: d["images"].append({"id": 9, "file_name": "x.jpg"})),
     r"instances_val2014.json: images\[3\] repeats the id 9 of images\[0\]"),
    ("coco image without file_name", _coco_edit(lambda d: d["images"][1].pop("file_name")),
     r"instances_val2014.json: images\[1\] needs a field 'file_name' of type str, got \{'id': 3\}"),
    ("coco annotation without category", _coco_edit(lambda d: d["annotations"][2].pop("category_id")),
     r"instances_val2014.json: annotations\[2\] needs a field 'category_id' of type int"),
    ("coco repeated category id", _coco_edit(lambda d: d["categories"].append({"id": 18, "name": "cat"})),
     r"instances_val2014.json: categories\[3\] repeats the id 18 of categories\[2\]"),
    ("cub attribute id 0", _cub_lines("1 1 1 4 3.0\n1 0 0 1 2.0\n"),
     r"image_attribute_labels.txt, line 2: attribute id 0 is outside 1..2"),
    ("cub attribute id negative", _cub_lines("1 1 1 4 3.0\n\n1 -3 0 1 2.0\n"),
     r"image_attribute_labels.txt, line 3: attribute id -3 is outside 1..2"),  # blank line counted
    ("cub attribute id huge", _cub_lines("1 1 1 4 3.0\n1 1000000000 0 1 2.0\n"),
     r"image_attribute_labels.txt, line 2: attribute id 1000000000 is outside 1..2"),
    ("cub attribute id past 32 bits", _cub_lines("1 1 1 4 3.0\n1 99999999999 0 1 2.0\n"),
     r"image_attribute_labels.txt, line 2: attribute id 99999999999 is out of range"),
    ("cub is_present 2", _cub_lines("1 1 2 4 3.0\n"),
     r"image_attribute_labels.txt, line 1: is_present 2 is outside 0..1"),
    ("cub repeated pair", _cub_lines("1 1 1 4 3.0\n1 2 0 1 2.0\n1 1 0 4 3.0\n"),
     r"image_attribute_labels.txt, line 3: repeats the image and attribute of line 1"),
    ("cub not an integer", _cub_lines("1 1 1 4 3.0\n1 x 0 1 2.0\n"),
     r"image_attribute_labels.txt, line 2: expected an integer, got 'x'"),
    ("cub too few fields", _cub_lines("1 1 1 4 3.0\n1 2\n"),
     r"image_attribute_labels.txt, line 2: expected 'image_id attribute_id"),
    ("cub empty", _cub_lines(""), r"image_attribute_labels.txt: no attribute labels"),
    ("stl10 label byte 0", _stl10_labels([1, 0, 3]), r"train_y.bin: label 0 of image 1 \(0-based\) is outside 1..10"),
    ("stl10 label byte 11", _stl10_labels([11]), r"train_y.bin: label 11 of image 0 \(0-based\) is outside 1..10"),
    ("nuswide malformed entry", _nuswide("0\n-1130179\n1\n"),
     r"Labels_lake_Train.txt, line 2: expected 0 or 1, got '-1130179' \(1 such line.*malformed='absent'"),
    ("nuswide csv repeated column", _nuswide_csv_repeated_column,
     r"nus_wid_data.csv, line 1: column 'label' appears twice"),
    ("openimages over the label budget", _openimages_small_budget,
     r"imagelabels.csv, line 6: already 3 images x 4 classes, more than max_label_bytes=8"),
]


@pytest.mark.parametrize("write, message", [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_names_file_line_and_value(tmp_path: Path, write: Callable, message: str) -> None:
    name, split, kwargs = write(tmp_path)
    with pytest.raises(DatasetFormatError, match=message):
        create_dataset(name, split, root=tmp_path, image_size=8, **kwargs)


def test_folder_positives_only_file_loads_when_marked(tmp_path: Path) -> None:
    _folder_csv("image,cat,dog\na.jpg,1,0\n")(tmp_path)
    ds = create_dataset("folder", "train", root=tmp_path, image_size=8, zero_means="unknown")
    assert ds.labels.tolist() == [[1, 0]]
    with pytest.raises(ValueError, match=r"zero_means must be one of"):
        create_dataset("folder", "train", root=tmp_path, image_size=8, zero_means="absent")


def test_csv_files_with_a_byte_order_mark_load(tmp_path: Path) -> None:
    """Excel's "CSV UTF-8" starts with a BOM, which must not become part of the first name."""
    _image(tmp_path / "a.jpg")
    (tmp_path / "train.csv").write_text("image,cat,dog\na.jpg,1,-1\n", encoding="utf-8-sig")
    assert create_dataset("folder", "train", root=tmp_path, image_size=8).labels.tolist() == [[1, -1]]
    (tmp_path / "classes.txt").write_text("dog\ncat\n", encoding="utf-8-sig")
    assert create_dataset("folder", "train", root=tmp_path, image_size=8).classes == ["dog", "cat"]
    oi = tmp_path / "oi"
    oi.mkdir()
    _openimages(oi)
    for name in ("class-descriptions.csv", "validation-annotations-human-imagelabels.csv"):
        (oi / name).write_text((oi / name).read_text(), encoding="utf-8-sig")
    assert create_dataset("openimages", "val", root=oi, image_size=8).classes == ["Cat", "Dog", "Car", "Tree"]


def test_nuswide_malformed_entries_read_as_absent_with_a_count(tmp_path: Path) -> None:
    _nuswide("0\n-1130179\n1\n")(tmp_path)
    with pytest.warns(UserWarning, match=r"1 malformed label entr\(ies\) read as absent, first .*"
                                         r"Labels_lake_Train.txt, line 2: '-1130179'"):
        ds = create_dataset("nuswide", "train", root=tmp_path, image_size=8, malformed="absent")
    assert ds.labels.tolist() == [[1, -1], [-1, -1], [1, 1]] and ds.info["malformed_labels"] == 1
    with pytest.raises(ValueError, match=r"malformed must be one of \('error', 'absent'\)"):
        create_dataset("nuswide", "train", root=tmp_path, image_size=8, malformed="ignore")


def test_loaders_take_no_ignored_cache_argument() -> None:
    """Issue 14: no loader carries an argument it ignores (images are read from disk)."""
    for name in ("coco", "voc2007", "nuswide", "openimages", "cub", "cifar10", "stl10", "folder"):
        assert "cache" not in inspect.signature(DATASETS.lookup(name)).parameters, name


# --- bad_images="skip": decoded once, then read from the cache --------------------------------------

def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    from mlrobust.data.formats import _imagecheck

    seen: list[Path] = []
    real = _imagecheck.readable

    def counting(path: Path) -> bool:
        seen.append(path)
        return real(path)

    monkeypatch.setattr(_imagecheck, "readable", counting)
    return seen


def test_skip_check_is_cached_by_file_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("MLROBUST_CACHE_DIR", str(cache))
    decoded = _count_decodes(monkeypatch)
    _coco(tmp_path / "coco")
    bad = tmp_path / "coco" / "val2014" / "COCO_val2014_3.jpg"
    bad.write_bytes(b"not a jpeg")
    first = create_dataset("coco", "test", root=tmp_path / "coco", image_size=8, bad_images="skip")
    assert [p.name for p in first.skipped] == [bad.name] and len(decoded) == 3
    entries = list((cache / "bad-images").iterdir())
    assert len(entries) == 1 and entries[0].suffix == ".json"  # no temporary file left behind
    second = create_dataset("coco", "test", root=tmp_path / "coco", image_size=8, bad_images="skip")
    assert second.skipped == first.skipped and len(decoded) == 3  # nothing decoded again
    _image(bad)  # the file is repaired: new size and time, new key, checked again
    third = create_dataset("coco", "test", root=tmp_path / "coco", image_size=8, bad_images="skip")
    assert third.skipped == [] and len(third) == 3 and len(decoded) == 6
    (current,) = set((cache / "bad-images").iterdir()) - set(entries)
    current.write_text("{truncated")  # a damaged cache file is ignored and rewritten
    assert create_dataset("coco", "test", root=tmp_path / "coco", image_size=8, bad_images="skip").skipped == []
    assert len(decoded) == 9 and json.loads(current.read_text())["skipped"] == []


def test_skip_cache_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLROBUST_CACHE_DIR", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    decoded = _count_decodes(monkeypatch)
    _coco(tmp_path)
    for _ in range(2):
        create_dataset("coco", "test", root=tmp_path, image_size=8, bad_images="skip")
    assert len(decoded) == 6 and not (tmp_path / "home").exists()


def test_skip_on_a_dataset_with_every_image_bad_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLROBUST_CACHE_DIR", str(tmp_path / "cache"))
    _folder_csv("image,cat\na.jpg,1\n")(tmp_path)
    (tmp_path / "a.jpg").write_bytes(b"")
    with pytest.raises(DatasetFormatError, match=r"all 1 images are missing or unreadable, first .*a.jpg"):
        create_dataset("folder", "train", root=tmp_path, image_size=8, bad_images="skip")
