"""Pascal VOC 2007 (Everingham et al., 2010) classification: 20 classes.

Layout: ``root`` is the folder holding ``VOCdevkit/VOC2007``, or ``VOCdevkit``, or
``VOC2007`` itself, with ``Annotations/*.xml``, ``ImageSets/Main/{trainval,test}.txt`` and
``JPEGImages/*.jpg``. Splits: ``train`` (trainval, 5,011 images) and ``test`` (4,952).

A class with a non-difficult object is present (1); a class whose only objects are marked
``difficult`` is unknown (0), as in the official ``<class>_<set>.txt`` files and the VOC
evaluation, which ignores difficult objects; every other class is absent (-1).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import torch

from ..registry import register_dataset
from ._files import DatasetFormatError, ImageFiles, dataset_root, first_existing, read_lines, require_file

__all__ = ["VOC_CLASSES", "voc_labels"]

VOC_CLASSES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor"]
VOC_SPLITS = {"train": "trainval", "test": "test", "trainval": "trainval"}


def _objects(xml_file: Path) -> list[tuple[str, bool]]:
    """(class name, difficult) of every object in one annotation file."""
    require_file(xml_file, "VOC annotation")
    try:
        tree = ET.parse(xml_file)
    except ET.ParseError as err:
        raise DatasetFormatError(f"{xml_file}: malformed XML ({err})") from None
    out = []
    for obj in tree.getroot().iter("object"):
        name = obj.findtext("name")
        if name is None:
            raise DatasetFormatError(f"{xml_file}: an <object> has no <name>")
        out.append((name.strip(), (obj.findtext("difficult") or "0").strip() == "1"))
    return out


def voc_labels(voc: Path, image_set: str) -> tuple[list[str], torch.Tensor]:
    """(image ids, labels (N, 20) int8) of one image set of a VOC2007 folder."""
    ids = [line.split()[0] for line in read_lines(voc / "ImageSets" / "Main" / f"{image_set}.txt", "VOC image set")]
    column = {c: j for j, c in enumerate(VOC_CLASSES)}
    present = torch.zeros(len(ids), len(VOC_CLASSES), dtype=torch.bool)
    difficult = torch.zeros_like(present)
    for i, image_id in enumerate(ids):
        xml_file = voc / "Annotations" / f"{image_id}.xml"
        for name, hard in _objects(xml_file):
            if name not in column:
                raise DatasetFormatError(f"{xml_file}: unknown class {name!r}; expected one of {VOC_CLASSES}")
            (difficult if hard else present)[i, column[name]] = True
    labels = torch.where(present, 1, torch.where(difficult, 0, -1)).to(torch.int8)  # present wins over difficult
    return ids, labels


def _voc_folder(root: Path) -> Path:
    candidates = [root / "VOCdevkit" / "VOC2007", root / "VOC2007", root]
    return first_existing([c / "Annotations" for c in candidates], "VOC 2007 annotations", "folder").parent


@register_dataset("voc2007")
def voc2007(split: str, *, root: str | Path | None, image_size: int = 448, n: int | None = None, seed: int = 0,
            bad_images: str = "error") -> ImageFiles:
    """Pascal VOC 2007, ``split`` in train (trainval) / test."""
    voc = _voc_folder(dataset_root("voc2007", root, split, VOC_SPLITS, "the folder holding VOCdevkit/VOC2007"))
    ids, labels = voc_labels(voc, VOC_SPLITS[split])
    return ImageFiles(f"voc2007/{VOC_SPLITS[split]}", [voc / "JPEGImages" / f"{i}.jpg" for i in ids], labels,
                      VOC_CLASSES, image_size=image_size, bad_images=bad_images, n=n, seed=seed)
