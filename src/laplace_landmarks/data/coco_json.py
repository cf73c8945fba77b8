"""COCO keypoint JSON as MMPose uses it for face landmarks (300W, AFLW, WFLW, COFW).

Points are (x, y) float64, 0-based, with pixel centres at integers, taken as stored (see
`laplace_landmarks.data.formats` for what MMPose's files hold). Flags ``v``: 0 not labelled,
1 labelled but occluded, 2 labelled and visible; ``visibility = v > 0``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from laplace_landmarks.atomic import atomic_write_text
from laplace_landmarks.data.annotation_io import (
    LandmarkRecord,
    Source,
    check_count,
    check_record,
    decode_text,
    make_record,
    parse_guarded,
    xywh_from_box,
)
from laplace_landmarks.errors import FormatError


def read_coco_keypoints(
    source: Source,
    expected_points: int | None = None,
    skipped: list[tuple[str, str]] | None = None,
) -> list[LandmarkRecord]:
    """Read COCO-style keypoint JSON (as MMPose uses it for 300W, AFLW, WFLW, COFW).

    Returns one record per annotation: points (K, 2) (x, y) 0-based as stored, visibility
    ``v > 0``, box from ``bbox``. A bad file raises FormatError. A bad annotation raises too,
    unless ``skipped`` is a list: then it is appended there as (where, reason) and left out.
    """
    parse = lambda content, label: _parse_coco(content, label, expected_points, skipped)  # noqa: E731
    return parse_guarded(source, parse)


def _parse_coco(content, label, expected_points, skipped) -> list[LandmarkRecord]:
    data = json.loads(decode_text(content, label))
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise FormatError(f"{label}: expected an object with an 'annotations' list")
    images = data.get("images")
    if not isinstance(images, list) or not all(isinstance(im, dict) for im in images):
        raise FormatError(f"{label}: expected an 'images' list of objects")
    by_id = {im.get("id"): im for im in images}
    records = []
    for index, annotation in enumerate(data["annotations"]):
        try:
            records.append(_coco_record(annotation, by_id, label, expected_points))
        except FormatError as error:
            if skipped is None:
                raise
            skipped.append((f"{label}#annotation{index}", str(error)))
    return records


def _coco_record(annotation, by_id, label, expected_points) -> LandmarkRecord:
    if not isinstance(annotation, dict) or annotation.get("image_id") not in by_id:
        raise FormatError(f"{label}: annotation without a known 'image_id'")
    image = by_id[annotation["image_id"]]
    name = image.get("file_name")
    keypoints = annotation.get("keypoints")
    entry = f"annotation {annotation.get('id')!r:.40}"
    where = f"{label}: {entry}"
    if not isinstance(name, str) or not name:
        raise FormatError(f"{where}: image has no 'file_name'")
    if not isinstance(keypoints, list) or not keypoints or len(keypoints) % 3:
        raise FormatError(f"{where}: 'keypoints' must be a non-empty list of x, y, v triples")
    values = np.array([_json_number(v, where) for v in keypoints]).reshape(-1, 3)
    check_count(len(values), expected_points, where)
    extras = {k: v for k, v in annotation.items() if k not in ("keypoints", "bbox")}
    flags = values[:, 2].tolist()
    meta = {"image": dict(image), "annotation": extras, "flags": flags, "where": entry}
    box = _coco_box(annotation.get("bbox"), where, meta)
    return make_record(name, values[:, :2], values[:, 2] > 0, box, meta)


def _json_number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FormatError(f"{where}: {str(value)[:40]!r} is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise FormatError(f"{where}: {value!r} is not finite")
    return number


def _coco_box(bbox: Any, where: str, meta: dict) -> tuple[float, float, float, float] | None:
    if bbox is None:
        return None
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise FormatError(f"{where}: 'bbox' must be [x, y, w, h]")
    x, y, w, h = (_json_number(v, where) for v in bbox)
    if w < 0 or h < 0:
        raise FormatError(f"{where}: 'bbox' has a negative size")
    meta["bbox"] = [x, y, w, h]
    return (x, y, x + w, y + h)


def write_coco_keypoints(path: str | Path, records: Sequence[LandmarkRecord]) -> None:
    """Write records as COCO keypoint JSON (one category 'face'), 0-based as stored.

    Image and annotation ids, extra annotation fields and raw flags from ``meta`` are kept when
    present, so a file read by `read_coco_keypoints` is written back with the same content.
    """
    images: dict[str, dict] = {}
    annotations = []
    for index, record in enumerate(records):
        image = images.setdefault(record.image, _coco_image(record, len(images)))
        annotations.append(_coco_annotation(record, image["id"], index))
    category = {"supercategory": "person", "id": 1, "name": "face", "keypoints": [], "skeleton": []}
    data = {"categories": [category], "images": list(images.values()), "annotations": annotations}
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def _coco_image(record: LandmarkRecord, index: int) -> dict:
    image = dict(record.meta.get("image", {}))
    image.setdefault("id", index)
    image["file_name"] = record.image
    return image


def _coco_annotation(record: LandmarkRecord, image_id: Any, index: int) -> dict:
    points, visibility = check_record(record)
    flags = record.meta.get("flags")
    if flags is None or len(flags) != len(points) or [f > 0 for f in flags] != visibility.tolist():
        flags = [2 if v else 0 for v in visibility]
    annotation = {"id": index, **record.meta.get("annotation", {}), "image_id": image_id}
    triples = np.column_stack([points, np.asarray(flags, dtype=np.float64)])
    annotation["keypoints"] = [_json_value(v) for v in triples.reshape(-1)]
    annotation["num_keypoints"] = int(np.count_nonzero(visibility))
    if record.box is not None:
        annotation["bbox"] = [
            _json_value(v) for v in xywh_from_box(record.box, record.meta.get("bbox"))
        ]
    return annotation


def _json_value(value: float) -> int | float:
    value = float(value)
    return int(value) if value.is_integer() and abs(value) < 2**53 else value
