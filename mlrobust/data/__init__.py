"""Data: the embedded benchmark (ShapeScenes), real-format loaders, the dataset registry,
the dataset protocol, augmentation and preprocessing."""

from .augment import POLICIES, Policy, create_policy, register_policy
from .dataset import DatasetBase, LabelledDataset, check_dataset
from .features import FeatureMaps, extract_features
from .formats import ArrayImages, DatasetFormatError, ImageFiles
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from .registry import DATASETS, DataSplits, Subset, TensorImages, create_dataset, hold_out, register_dataset
from .shapescenes import (ATTRIBUTES, CLASSES, COMPANIONS, CONTEXTS, DISTRACTOR_CLASSES, ShapeScenes,
                          context_only_logits, render_scenes, sample_scenes, scene_attributes, scene_class_radius,
                          scene_labels)

__all__ = [
    "POLICIES", "Policy", "create_policy", "register_policy",
    "DatasetBase", "LabelledDataset", "check_dataset",
    "FeatureMaps", "extract_features", "ArrayImages", "DatasetFormatError", "ImageFiles",
    "IMAGENET_MEAN", "IMAGENET_STD", "Preprocess",
    "DATASETS", "DataSplits", "Subset", "TensorImages", "create_dataset", "hold_out", "register_dataset",
    "ShapeScenes", "render_scenes", "sample_scenes", "scene_labels", "scene_attributes", "scene_class_radius",
    "context_only_logits", "CLASSES", "DISTRACTOR_CLASSES", "CONTEXTS", "COMPANIONS", "ATTRIBUTES",
]
