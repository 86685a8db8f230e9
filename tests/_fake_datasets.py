"""A small dataset written in MS-COCO 2014's exact layout, for running chapters and the engine
on a real-format loader without the real data. Images are coloured shapes, one colour per
class, so a network can learn them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = [(1, "person"), (2, "bicycle"), (3, "car"), (17, "cat"), (18, "dog"), (44, "bottle")]
COLOURS = [(220, 40, 40), (40, 200, 40), (40, 40, 220), (220, 220, 40), (200, 40, 200), (40, 200, 200)]


def write_fake_coco(root: Path, n_train: int = 240, n_val: int = 96, size: int = 48, seed: int = 0) -> Path:
    """Write ``root/annotations/instances_{train,val}2014.json`` and the JPEG folders."""
    rng = np.random.default_rng(seed)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for folder, n in (("train2014", n_train), ("val2014", n_val)):
        (root / folder).mkdir(exist_ok=True)
        images, annotations = [], []
        for i in range(n):
            image_id = 1000 + i
            name = f"COCO_{folder}_{image_id:012d}.jpg"
            # one to three classes per image; some images have none (kept or dropped by keep_empty)
            k = int(rng.choice([0, 1, 1, 2, 2, 3], p=[0.05, 0.25, 0.2, 0.25, 0.15, 0.1]))
            chosen = rng.choice(len(CLASSES), size=k, replace=False)
            canvas = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(90, 160, 3)))
            draw = ImageDraw.Draw(canvas)
            for c in chosen:
                x, y = rng.integers(0, size - size // 3, 2)
                r = int(rng.integers(size // 6, size // 3))
                draw.ellipse([int(x), int(y), int(x) + r, int(y) + r], fill=COLOURS[c])
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": CLASSES[c][0],
                                    "iscrowd": 0, "bbox": [int(x), int(y), r, r]})
            canvas.save(root / folder / name, quality=90)
            images.append({"id": image_id, "file_name": name, "width": size, "height": size})
        data = {"images": images, "annotations": annotations,
                "categories": [{"id": i, "name": n, "supercategory": "thing"} for i, n in CLASSES]}
        (root / "annotations" / f"instances_{folder}.json").write_text(json.dumps(data))
    return root
