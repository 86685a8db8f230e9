"""Data: the embedded benchmark (ShapeScenes), the dataset registry and batch transforms."""

from .registry import DATASETS, DataSplits, LabelledDataset, TensorImages, build_dataset, register_dataset
from .shapescenes import ATTRIBUTES, CLASSES, CONTEXTS, DISTRACTOR_CLASSES, ShapeScenes, render_scenes, sample_scenes

__all__ = [
    "DATASETS", "DataSplits", "LabelledDataset", "TensorImages", "build_dataset", "register_dataset",
    "ShapeScenes", "render_scenes", "sample_scenes", "CLASSES", "DISTRACTOR_CLASSES", "CONTEXTS", "ATTRIBUTES",
]
