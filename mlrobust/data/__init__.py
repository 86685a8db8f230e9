"""Data: the embedded benchmark (ShapeScenes) and the dataset registry."""

from .features import FeatureMaps, extract_features
from .formats import ArrayImages, DatasetFormatError, ImageFiles
from .registry import DATASETS, DataSplits, LabelledDataset, Subset, TensorImages, build_dataset, register_dataset
from .shapescenes import (ATTRIBUTES, CLASSES, COMPANIONS, CONTEXTS, DISTRACTOR_CLASSES, ShapeScenes, render_scenes,
                          sample_scenes, scene_attributes, scene_class_radius, scene_labels,
                          context_only_logits)

__all__ = [
    "FeatureMaps", "extract_features", "ArrayImages", "DatasetFormatError", "ImageFiles", "Subset", "DATASETS", "DataSplits", "LabelledDataset", "TensorImages", "build_dataset", "register_dataset",
    "ShapeScenes", "render_scenes", "sample_scenes", "scene_labels", "scene_attributes", "scene_class_radius", "context_only_logits",
    "CLASSES", "DISTRACTOR_CLASSES", "CONTEXTS", "COMPANIONS", "ATTRIBUTES",
]
