"""dlib's training XML (the imglab format read by ``dlib.train_shape_predictor``).

Points are (x, y) float64, 0-based, with pixel centres at integers, as dlib stores them. A box
``top left width height`` is ``box = (left, top, left + width, top + height)``: dlib's rectangles
are inclusive, so ``x1`` is one past dlib's ``right()``. dlib writes file names unescaped, so a
name holding ``&`` or ``<`` makes its file invalid XML; such a file raises FormatError here.

Files are parsed with defusedxml: a document with a DTD (and so any entity, internal or external:
"billion laughs", external-entity reads) is refused with FormatError; dlib never writes one.
Image names are returned as stored; `laplace_landmarks.data.datasets.image_in_root` keeps them
inside the dataset folder.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # building XML to write only; reading goes through defusedxml
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as safe_fromstring

from laplace_landmarks.atomic import atomic_write_text
from laplace_landmarks.data.annotation_io import (
    MAX_POINTS,
    LandmarkRecord,
    Source,
    check_record,
    format_number,
    make_record,
    parse_guarded,
    parse_number,
    xywh_from_box,
)
from laplace_landmarks.errors import FormatError


def read_dlib_xml(source: Source, expected_points: int | None = None) -> list[LandmarkRecord]:
    """Read dlib's training XML (imglab format): one record per ``<box>``, 0-based points.

    Parts are named by their index (``"00"``, ``"01"``, ...). K is ``expected_points`` or one
    more than the largest part index in the file; missing parts are not visible (points 0).
    Raises FormatError for bad XML, bad numbers, duplicate or out-of-range part names.
    """
    parse = lambda content, label: _parse_dlib(content, label, expected_points)  # noqa: E731
    return parse_guarded(source, parse)


def _parse_dlib(content: bytes, label: str, expected_points: int | None) -> list[LandmarkRecord]:
    root = _safe_xml(content, label)
    if root.tag != "dataset":
        raise FormatError(f"{label}: root element is <{root.tag[:40]}>, expected <dataset>")
    boxes = []
    for image in root.iter("image"):
        name = image.get("file")
        if not name:
            raise FormatError(f"{label}: <image> without a 'file' attribute")
        boxes += [(name, box, _dlib_parts(box, label)) for box in image.iter("box")]
    largest = max((max(parts, default=-1) for _, _, parts in boxes), default=-1)
    count = largest + 1 if expected_points is None else expected_points
    if largest >= count:
        raise FormatError(f"{label}: part index {largest} but expected {count} points")
    return [
        _dlib_record(name, box, parts, count, label, index)
        for index, (name, box, parts) in enumerate(boxes)
    ]


def _safe_xml(content: bytes, label: str) -> ET.Element:
    """Parse untrusted XML: no DTD, so no entity expansion and no external reads."""
    try:
        return safe_fromstring(content, forbid_dtd=True)
    except DefusedXmlException as error:
        raise FormatError(
            f"{label}: refused: the XML declares a DTD or entities ({type(error).__name__}); "
            "annotation files must not"
        ) from error


def _dlib_parts(box: ET.Element, label: str) -> dict[int, tuple[float, float]]:
    parts: dict[int, tuple[float, float]] = {}
    for part in box.iter("part"):
        name = part.get("name", "")
        if (
            not name.isdigit()
            or not name.isascii()
            or int(name) >= MAX_POINTS
            or int(name) in parts
        ):
            raise FormatError(f"{label}: bad or repeated part name {name[:40]!r}")
        what = f"part {name}"
        parts[int(name)] = (parse_number(_attr(part, "x", label), label, what),
                            parse_number(_attr(part, "y", label), label, what))  # fmt: skip
    return parts


def _attr(element: ET.Element, key: str, label: str) -> str:
    value = element.get(key)
    if value is None:
        raise FormatError(f"{label}: <{element.tag}> without a '{key}' attribute")
    return value


def _dlib_record(name, box, parts, count, label, index) -> LandmarkRecord:
    left, top, width, height = (
        parse_number(_attr(box, key, label), label, f"box {key}")
        for key in ("left", "top", "width", "height")
    )
    points = [parts.get(i, (0.0, 0.0)) for i in range(count)]
    visibility = [i in parts for i in range(count)]
    meta = {"bbox": [left, top, width, height], "where": f"box {index}"}
    if box.get("ignore") is not None:
        meta["ignore"] = box.get("ignore")
    return make_record(name, points, visibility, (left, top, left + width, top + height), meta)


def write_dlib_xml(
    path: str | Path,
    records: Sequence[LandmarkRecord],
    name: str = "",
    round_to_int: bool = False,
) -> None:
    """Write records as dlib training XML (0-based). Boxes of one image share one ``<image>``.

    Values are written exactly, integral ones without a decimal point. dlib itself only reads
    integers (it refuses ``x='15.5'``): pass ``round_to_int=True`` for files dlib will train on.
    A record without a box gets the bounding box of its visible points. Invisible points are
    left out (dlib's way). Parts are named ``00``, ``01``, ... (zero-padded to a common width).
    """
    dataset = ET.Element("dataset")
    ET.SubElement(dataset, "name").text = name
    images_element = ET.SubElement(dataset, "images")
    images: dict[str, ET.Element] = {}
    for record in records:
        points, visibility = check_record(record)
        if record.image not in images:
            images[record.image] = ET.SubElement(images_element, "image", file=record.image)
        _dlib_box(images[record.image], record, points, visibility, round_to_int)
    ET.indent(dataset)
    text = ET.tostring(dataset, encoding="unicode")
    atomic_write_text(path, f"<?xml version='1.0' encoding='UTF-8'?>\n{text}\n")


def _dlib_box(parent: ET.Element, record: LandmarkRecord, points, visibility, rounded) -> None:
    box = record.box
    if box is None:
        shown = points[visibility] if visibility.any() else np.zeros((1, 2))
        box = (*shown.min(axis=0), *shown.max(axis=0))
    left, top, width, height = xywh_from_box(box, record.meta.get("bbox"))
    values = {"top": top, "left": left, "width": width, "height": height}
    number = (lambda v: format_number(np.rint(v))) if rounded else format_number
    element = ET.SubElement(parent, "box", {k: number(v) for k, v in values.items()})
    if record.meta.get("ignore") is not None:
        element.set("ignore", str(record.meta["ignore"]))
    digits = max(2, len(str(len(points) - 1)))
    for index in np.flatnonzero(visibility):
        x, y = points[index]
        attributes = {"name": f"{index:0{digits}d}", "x": number(x), "y": number(y)}
        ET.SubElement(element, "part", attributes)
