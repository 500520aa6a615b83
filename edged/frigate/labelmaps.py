"""Frigate's labelmaps, and how a model's classes get Frigate's ids (pure).

``coco-91`` is Frigate's default ``/labelmap.txt`` (read on Frigate's default branch: line N
is id N, the 2017 COCO paper's 91 categories with the ones never annotated kept as slots);
``coco-80`` is ``/labelmap/coco-80.txt``, the 80 annotated categories in order, as
Ultralytics' YOLO models number them. A class index Frigate's labelmap does not hold would
raise inside Frigate (it indexes a list), so a class without an id is never sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

COCO_91 = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "boat",
    "traffic light", "fire hydrant", "street sign", "stop sign", "parking meter", "bench",
    "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
    "hat", "backpack", "umbrella", "shoe", "eye glasses", "handbag", "tie", "suitcase",
    "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", "plate", "wine glass", "cup",
    "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli",
    "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed",
    "mirror", "dining table", "window", "desk", "toilet", "door", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "blender", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush", "hair brush",
)
COCO_80 = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
    "toothbrush",
)
LABELMAPS: dict[str, tuple[str, ...]] = {"coco-91": COCO_91, "coco-80": COCO_80}


def class_ids(labelmap: str | Mapping[str, int], labels: Sequence[str],
              classes: int) -> dict[int, int]:
    """The model's class index -> Frigate's id, for the classes that have one.

    A named labelmap matches the model's label names (case and spaces as written, ``_``
    read as a space); a model without labels passes its index through when the labelmap
    holds it. An explicit map names a label or a class index (as text).
    Raises ValueError when no class gets an id: nothing could ever be sent.
    """
    out: dict[int, int] = {}
    if isinstance(labelmap, str):
        names = LABELMAPS[labelmap]
        if labels:
            where = {name: i for i, name in enumerate(names)}
            for index, label in enumerate(labels):
                found = where.get(label.strip().lower().replace("_", " "))
                if found is not None:
                    out[index] = found
        else:
            out = {i: i for i in range(min(classes, len(names)))}
    else:
        by_label = {label: i for i, label in enumerate(labels)}
        for key, frigate_id in labelmap.items():
            found_index = by_label.get(key)
            if found_index is None and key.isdigit():
                found_index = int(key)
            if found_index is None:
                raise ValueError(f"labelmap names {key!r}, which is neither one of the "
                                 f"model's labels nor a class index")
            out[found_index] = frigate_id
    if not out:
        shown = ", ".join(list(labels)[:5]) or f"{classes} unlabelled classes"
        raise ValueError(f"none of the model's classes ({shown}) has an id in labelmap "
                         f"{labelmap}: give an explicit labelmap (label: Frigate id)")
    return out
