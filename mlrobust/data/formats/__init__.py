"""Loaders for real datasets in their official on-disk layouts, registered by name.

Each loader parses its annotation files into a label matrix (N, C) int8 without decoding any
image, and returns a dataset whose items are uint8 (3, S, S) images; see ``_files`` for the
shared behaviour (resizing, the bad-image policy, subsets) and each module for its layout.

========== ========================================== ==========================
name       dataset                                    splits
========== ========================================== ==========================
coco       MS-COCO 2014, 80 classes                   train, test (val2014)
voc2007    Pascal VOC 2007, 20 classes                train (trainval), test
nuswide    NUS-WIDE, 81 concepts (official or CSV)    train, test
openimages Open Images human-verified labels          train, val, test
cub        CUB-200-2011, 312 attributes               train, test
cifar10    CIFAR-10 (binary or python)                train, test
stl10      STL-10 (binary, folds)                     train, test, unlabeled
folder     your own CSV / JSON-lines file             any file name
========== ========================================== ==========================
"""

from . import arrays, coco, cub, folder, nuswide, openimages, voc
from ._files import ArrayImages, DatasetFormatError, ImageFiles

__all__ = ["ArrayImages", "DatasetFormatError", "ImageFiles", "arrays", "coco", "cub", "folder", "nuswide",
           "openimages", "voc"]
