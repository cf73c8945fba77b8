"""The user-facing API: ``Landmarker`` finds faces, crops them, predicts 68 points and maps back.

Coordinates are (x, y), 0-based, with pixel centres at integers, in image pixels unless a name
says "crop". Boxes are (x0, y0, x1, y1) in continuous edge coordinates (a box covering pixels
``0..W-1`` spans ``-0.5`` to ``W - 0.5``), as the detectors in :mod:`laplace_landmarks.detection`
return them.

Pipeline per image: detect (dlib HOG, offline) or take the caller's boxes -> crop with the
detector-box rule (:func:`~laplace_landmarks.detection.crop_from_detection`) -> predict -> with
``refine``, re-crop by the paper's 5-point rule around the first estimate and predict again ->
map points and scales back to image pixels. Every stage runs all faces of the image as one batch.

The network call is the only backend-specific step: ONNX Runtime (``backend="onnx"``, the default
for the shipped models, which ship as ONNX files beside their weights; no torch needed) or
PyTorch (``backend="torch"``, the default for ``.safetensors`` / ``.pt`` files and torch models;
needs ``pip install laplace-landmarks[train]``).

Example:
    >>> from laplace_landmarks import Landmarker
    >>> lm = Landmarker.pretrained()                       # doctest: +SKIP
    >>> faces = lm.predict("photo.jpg")                    # doctest: +SKIP
    >>> faces[0].points.shape, faces[0].scale.shape        # doctest: +SKIP
    ((68, 2), (68, 2))
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from laplace_landmarks.data.crops import Crop, crop_from_five_points, five_points_from_68, warp_crop
from laplace_landmarks.data.images import to_rgb_array
from laplace_landmarks.detection import Detection, FaceDetector, crop_from_detection
from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.run_config import RunConfig

if TYPE_CHECKING:
    import torch

    from laplace_landmarks.onnx_runtime import OnnxSession

#: What a ``.safetensors`` / ``.pt`` file, ``backend="torch"`` and training need on top of the
#: core install (which runs the shipped models and ``.onnx`` files on ONNX Runtime).
TORCH_HINT = "pip install laplace-landmarks[train]"
BACKENDS = ("torch", "onnx")

Box = tuple[float, float, float, float]
ImageInput = str | Path | Image.Image | np.ndarray

#: The shortest side, in image pixels, of a face box ``predict`` accepts: on a smaller face the
#: 68 points would crowd within a pixel or two of each other, and neither they nor their scales
#: would mean anything.
MIN_BOX_SIZE = 8.0
#: The longest side of a face box ``predict`` accepts, as a multiple of the image's longer side:
#: a bigger box cannot frame a face of the image, which would shrink to a few crop pixels.
MAX_BOX_RATIO = 10.0


@dataclass(frozen=True, eq=False)
class Face:
    """One face's landmarks, in image pixels: (x, y), 0-based, pixel centres at integers.

    points: (K, 2) float64, the softargmax means (K = 68 for the shipped models).
    scale: (K, 2) float64, the predicted Laplace scale b per axis in image pixels: the
        uncertainty. For a Laplace(mu, b), E|x - mu| = b, so a point's expected error along x is
        ``scale[k, 0]`` pixels.
    box: (x0, y0, x1, y1) the face box the first crop came from (the detector's, or the caller's),
        continuous edge coordinates.
    score: the detector's confidence (dlib's SVM margin, higher is surer; not a probability),
        or None when the caller gave the box.
    crop: the crop the final prediction was made on: with ``refine=True`` the paper's 5-point
        crop around the first estimate (unless that estimate was implausible, see
        ``_refined_crop``), else the box crop; ``crop.to_crop(points)`` gives crop pixels.
    """

    points: np.ndarray
    scale: np.ndarray
    box: Box
    score: float | None
    crop: Crop = field(repr=False)

    def to_dict(self, decimals: int = 3) -> dict[str, Any]:
        """A JSON-ready dict: ``box``, ``score``, ``points`` [[x, y], ...], ``scale`` [[bx, by], ...]."""
        return {
            "box": [round(float(v), decimals) for v in self.box],
            "score": None if self.score is None else round(float(self.score), 6),
            "points": np.round(self.points, decimals).tolist(),
            "scale": np.round(self.scale, decimals).tolist(),
        }

    def __repr__(self) -> str:
        box = ", ".join(f"{v:.1f}" for v in self.box)
        score = "None" if self.score is None else f"{self.score:.3f}"
        return (
            f"Face(points={self.points.shape}, median scale {np.median(self.scale):.2f} px, "
            f"box=({box}), score={score})"
        )


class Landmarker:
    """Detect faces and localise their landmarks with a Laplace uncertainty per point.

    Backends: the network call (crops -> points and scales) is the only step that differs.
    ``Landmarker.pretrained`` / ``load`` of a shipped model run its ONNX file on ONNX Runtime
    (``backend="onnx"``, the default; the core install, no torch); a ``.safetensors`` weights
    file or ``.pt`` checkpoint and a torch ``model`` run on PyTorch (``backend="torch"``, their
    default; needs ``pip install laplace-landmarks[train]``); an exported ``.onnx`` file runs on
    ONNX Runtime alone. ``backend="torch"`` on a shipped model loads its weights instead.

    Args:
        model: a torch generator mapping ``(B, 3, S, S)`` inputs in [-1, 1] to ``(B, K, S, S)``
            logits; None runs the ONNX file ``onnx_path`` alone (``backend="onnx"``).
        config: the run config the model was trained with (crop size ``config.data.size``);
            None: the ONNX file's (its metadata), else the default config.
        detector: any callable ``HxWx3 uint8 RGB -> list[Detection]``; default: dlib's HOG
            detector (offline), built on first use.
        refine: re-crop each face by the paper's 5-point rule around the first estimate and
            predict again. This makes boxes from any detector (or drawn by hand) work. True is
            one such pass, False none, an int ``n`` runs ``n`` passes (each from the last).
            None: the model's own (:func:`default_refine`): none for a model trained on the
            detector's crops (``config.data.crop == "detector"``, one pass from the box), else
            one.
        flip_test: also predict on the mirrored crops and average, with the mirror permutation
            of ``config.model.num_landmarks`` points: each point weighted by its inverse
            variance (1 / b^2 per axis), the scales plain. In ``predict`` only the final pass is
            mirrored (with one refinement pass: 1.5x the network time): mirroring the first
            pass as well gained nothing on ytf68 val (docs/results.md). ``predict_batch``
            mirrors its one pass (2x).
        threads: CPU threads while predicting: ONNX Runtime's intra-op threads (None: one,
            :data:`DEFAULT_ONNX_THREADS`: a face is a fraction of a millisecond of network, and a
            pool of threads only adds waiting, which collapses when another process is busy),
            or torch's (restored afterwards; None leaves torch's).
        batch_size: the most faces per forward pass.
        backend: ``"onnx"`` (ONNX Runtime) or ``"torch"`` (PyTorch) runs the crop -> points
            stage; None: ``"torch"`` when ``model`` is given, else ``"onnx"``.
        onnx_path: the ``.onnx`` file for ``backend="onnx"``; None exports ``model`` once into
            ``~/.cache/laplace-landmarks/onnx/<hash>.onnx`` (see ``onnx_cache.cached_export``).
        first_pass: another Landmarker whose one pass from the box makes the first estimate,
            which this model's ``refine`` passes then re-crop from (a cascade: a cheap network
            trained on the detector's crops finds the face, the larger one places the points).
            It must make one pass from the box (``refine == 0``), and this model must refine at
            least once. None: this model's own first pass.
    """

    def __init__(
        self,
        model: torch.nn.Module | None = None,
        config: RunConfig | None = None,
        detector: FaceDetector | None = None,
        refine: bool | int | None = None,
        flip_test: bool = False,
        threads: int | None = None,
        batch_size: int = 64,
        backend: str | None = None,
        onnx_path: str | Path | None = None,
        first_pass: Landmarker | None = None,
    ) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if refine is not None and int(refine) < 0:
            raise ValueError(f"refine must be a bool or a number of passes >= 0, got {refine}")
        backend = backend or ("onnx" if model is None else "torch")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}")
        if model is None and (backend == "torch" or onnx_path is None):
            raise ValueError("Landmarker needs a torch model, or backend='onnx' and an onnx_path")
        self._model = None if model is None else model.eval()
        self._weights: Path | None = None  # where ``model`` loads from on first use, if known
        self.backend, self.threads, self.batch_size = backend, threads, int(batch_size)
        self._onnx = None
        if model is None:  # an ONNX file alone: its metadata holds the config
            self._onnx = _onnx_session(None, onnx_path, threads)
            if config is None:
                from laplace_landmarks.onnx_runtime import onnx_config

                config = onnx_config(self._onnx)
        self.config = config or RunConfig()
        self.crop_size = int(self.config.data.size)
        if backend == "onnx" and self._onnx is None:
            self._onnx = _onnx_session(model, onnx_path, threads, self.crop_size)
        if self._onnx is not None:
            self._onnx.check_interface(self.crop_size)
        self.refine = default_refine(self.config) if refine is None else int(refine)
        self.flip_test = bool(flip_test)
        if first_pass is not None:
            _check_first_pass(first_pass, self.refine, self.config.model.num_landmarks)
        self.first_pass = first_pass
        self.metadata: dict[str, str] = {}
        self.name = "custom"
        self._detector = detector
        self._mirror = _mirror_permutation(self.config.model.num_landmarks) if flip_test else None
        # the fitted point offset, which flip_test takes off before mirroring
        self._point_offset = (
            _torch_point_offset(model) if model is not None else self._onnx.point_offset()
        )

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs: Any) -> Landmarker:
        """Load a ``.safetensors`` weights file or a ``.pt`` training checkpoint (PyTorch,
        ``backend="torch"`` unless asked), or an ``.onnx`` file made by ``laplace-landmarks
        export`` (ONNX Runtime alone, no torch).

        Raises LandmarksError naming the file when it cannot be loaded, is not a landmark
        model, or is a weights file and PyTorch is not installed."""
        path = Path(path)
        if path.suffix == ".onnx":
            if kwargs.pop("backend", None) not in (None, "onnx"):
                raise LandmarksError(f"{path}: an ONNX file runs on backend 'onnx' only")
            kwargs["onnx_path"] = path
            landmarker = cls(None, backend="onnx", **kwargs)
            landmarker.metadata = dict(landmarker._onnx.metadata)
        else:
            model, config, metadata = _load_torch_generator(path)
            landmarker = cls(model, config, **kwargs)
            landmarker.metadata = metadata
        landmarker.name = path.stem
        return landmarker

    @classmethod
    def pretrained(cls, name: str | None = None, **kwargs: Any) -> Landmarker:
        """A model shipped in the package (see ``list_pretrained()``); None = the default one.

        Runs the model's shipped ONNX file on ONNX Runtime unless ``backend="torch"`` (which
        loads its weights; needs PyTorch) or an ``onnx_path`` is given; ``model`` loads the
        torch generator on first use. ``flip_test`` and ``first_pass`` left out (or None) take
        the model's own settings from the index (the default starts from ``rcn-lite``'s
        one pass and mirrors its final pass; ``rcn-lite-medium`` starts from ``rcn-lite`` too;
        ``refine=0`` goes without a first-pass model). ``first_pass=False``: the model's own.
        """
        from laplace_landmarks.weights import pretrained_entry

        entry = pretrained_entry(name)
        if kwargs.get("flip_test") is None:
            kwargs["flip_test"] = bool(entry.get("flip_test", False))
        if kwargs.get("first_pass") is None and kwargs.get("refine") not in (0, False):
            kwargs["first_pass"] = entry.get("first_pass")  # none for one pass from the box
        kwargs["first_pass"] = _first_pass_landmarker(kwargs, backend=kwargs.get("backend"))
        shipped_onnx = entry["onnx"]
        backend = kwargs.pop("backend", None) or ("onnx" if shipped_onnx else "torch")
        if backend == "onnx" and shipped_onnx and kwargs.get("onnx_path") is None:
            landmarker = cls.from_checkpoint(shipped_onnx, **kwargs)
            landmarker._weights = entry["path"]
        else:
            landmarker = cls.from_checkpoint(entry["path"], backend=backend, **kwargs)
        landmarker.name = entry["name"]
        return landmarker

    @classmethod
    def load(
        cls, model: str | Path | None = None, min_score: float | None = None, **kwargs: Any
    ) -> Landmarker:
        """A shipped model by name (None = the default) or a weights/checkpoint file by path.

        A file is a ``.safetensors`` / ``.pt`` (PyTorch) or an exported ``.onnx`` file (ONNX
        Runtime); see :meth:`from_checkpoint`. ``flip_test`` left out (or None) takes a shipped
        model's own setting; a file has it off unless asked. ``min_score`` sets the built-in dlib HOG detector's score threshold (its
        ``adjust_threshold``; None keeps 0). Raises LandmarksError for an unknown name or a
        missing file."""
        if min_score is not None and kwargs.get("detector") is None:
            from laplace_landmarks.detection import DlibHogDetector

            kwargs["detector"] = DlibHogDetector(upsample=1, threshold=min_score)
        if model is not None and (
            Path(model).suffix in (".safetensors", ".pt", ".onnx") or Path(model).exists()
        ):
            if not Path(model).is_file():
                raise LandmarksError(f"weights: {model} does not exist")
            kwargs["flip_test"] = bool(kwargs.get("flip_test"))
            kwargs["first_pass"] = _first_pass_landmarker(kwargs, backend=kwargs.get("backend"))
            landmarker = cls.from_checkpoint(model, **kwargs)
            landmarker.name = str(model)
            return landmarker
        return cls.pretrained(None if model is None else str(model), **kwargs)

    @property
    def model(self) -> torch.nn.Module:
        """The torch generator; a shipped model on ONNX Runtime loads it from its weights on
        first use (needs PyTorch). LandmarksError for a Landmarker on an ``.onnx`` file alone."""
        if self._model is None:
            if self._weights is None:
                raise LandmarksError(
                    f"{self.name}: runs an ONNX file alone and has no torch model (load its "
                    ".safetensors weights for one)"
                )
            self._model = _load_torch_generator(self._weights)[0]
        return self._model

    @property
    def passes(self) -> str:
        """The network passes per face, in words: ``"2"``, ``"2, the last mirrored"``, or
        ``"rcn-lite + 1 mirrored"`` (a first-pass model's one pass, then this model's)."""
        mirrored = self.flip_test
        if self.first_pass is not None:
            last = " mirrored" if self.refine == 1 else ", the last mirrored"
            return f"{self.first_pass.name} + {self.refine}" + (last if mirrored else "")
        total = 1 + self.refine
        if not mirrored:
            return str(total)
        return "1 mirrored" if total == 1 else f"{total}, the last mirrored"

    @property
    def detector(self) -> FaceDetector:
        """The face detector, built on first use (dlib HOG, upsample 1)."""
        if self._detector is None:
            from laplace_landmarks.detection import DlibHogDetector

            self._detector = DlibHogDetector(upsample=1)
        return self._detector

    def predict(
        self, image: ImageInput, boxes: Sequence[Sequence[float]] | None = None
    ) -> list[Face]:
        """Landmarks of every face in ``image``; an empty list when there is none.

        Args:
            image: a path, a PIL image or an (H, W, 3) / (H, W) uint8 array (any PIL mode:
                grayscale, RGBA composited on black, 16-bit; see ``data.images``).
            boxes: face boxes (x0, y0, x1, y1) in image pixels (continuous edge coordinates);
                None runs the detector. A box may reach outside the image (zero padding), but
                must overlap it, be at least :data:`MIN_BOX_SIZE` pixels on each side and at
                most :data:`MAX_BOX_RATIO` times the image's longer side. Detections that miss
                these bounds are skipped.

        Returns:
            One :class:`Face` per box (or detection, best score first), points and scales in
            image pixels, (x, y), 0-based, pixel centres at integers; every point finite and
            every scale positive.

        Raises:
            ImageError (a LandmarksError): ``image`` cannot be read, is too large, or is not an
            (H, W, 3) / (H, W) uint8 array, a PIL image or a path. LandmarksError naming the
            box: ``boxes`` is malformed, or a box is non-finite, degenerate, too small, too large
            or entirely outside the image (see :func:`check_boxes`), or the model's output on it
            is not finite.
        """
        return self.predict_many([image], None if boxes is None else [boxes])[0]

    def predict_many(
        self,
        images: Sequence[ImageInput],
        boxes: Sequence[Sequence[Sequence[float]] | None] | None = None,
    ) -> list[list[Face]]:
        """:meth:`predict` for several images at once: the faces of all of them go through
        each pass together, as one stack of crops and one network call per ``batch_size``
        faces (a folder of one-face photos pays the per-call cost once per batch, not once per
        face). The results are those of :meth:`predict` on each image.

        Args:
            images: what :meth:`predict` takes, one per image.
            boxes: None runs the detector on every image; else one entry per image, a list of
                boxes or None (detect that one).

        Returns:
            One list of :class:`Face` per image, in order.

        Raises:
            ImageError / LandmarksError as :meth:`predict`, naming ``images[i]`` (and the box).
        """
        if boxes is not None and len(boxes) != len(images):
            raise LandmarksError(
                f"boxes: {len(boxes)} entries for {len(images)} images (one list, or None, per "
                "image)"
            )
        single = len(images) == 1
        sources: list[np.ndarray] = []  # the image each face's crops are warped from
        face_boxes: list[Box] = []
        scores: list[float | None] = []
        owners: list[int] = []
        for index, image in enumerate(images):
            rgb = to_rgb_array(image, "image" if single else f"images[{index}]")
            given = None if boxes is None else boxes[index]
            if given is None:
                found, found_scores = self._detect(rgb)
            else:
                found = check_boxes(given, rgb.shape[1], rgb.shape[0])
                found_scores = [None] * len(found)
            if found:
                sources += [rgb] * len(found)  # each warp copies only the region it needs
                face_boxes += found
                scores += found_scores
                owners += [index] * len(found)
        faces: list[list[Face]] = [[] for _ in images]
        if not face_boxes:
            return faces
        anchors = [crop_from_detection(box, size=self.crop_size) for box in face_boxes]
        with self._threads():
            crops = anchors
            if self.first_pass is not None:
                first = self.first_pass
                with first._threads():
                    points, scale = first._predict_in_images(
                        sources, [crop_from_detection(b, size=first.crop_size) for b in face_boxes]
                    )
            else:
                points, scale = self._predict_in_images(
                    sources, crops, flip=self.flip_test and not self.refine
                )
            for i in range(self.refine):
                last = self.flip_test and i == self.refine - 1
                crops, points, scale = self._refine(
                    sources, crops, anchors, points, scale, flip=last
                )

        def name(i: int) -> str:
            return f"box {list(face_boxes[i])}" + ("" if single else f" of images[{owners[i]}]")

        _check_predictions(points, scale, name)
        for i, owner in enumerate(owners):
            faces[owner].append(Face(points[i], scale[i], face_boxes[i], scores[i], crops[i]))
        return faces

    def _detect(self, rgb: np.ndarray) -> tuple[list[Box], list[float | None]]:
        """The detector's boxes that can frame a face (see :func:`box_problem`), best first,
        and their scores."""
        usable = usable_detections(self.detector(rgb), rgb.shape[1], rgb.shape[0])
        return [_as_box(d.box) for d in usable], [d.score for d in usable]

    def _refine(
        self,
        sources: list[np.ndarray],
        crops: list[Crop],
        anchors: list[Crop],
        points: np.ndarray,
        scale: np.ndarray,
        flip: bool = False,
    ) -> tuple[list[Crop], np.ndarray, np.ndarray]:
        """Another pass on the 5-point crops around the last estimates (one batch).

        A face whose estimate gives no usable crop (judged against its box's crop, its
        ``anchor``; see ``_refined_crop``) keeps its crop and points, unless ``flip`` (the
        final, mirrored pass), which predicts every face again on its final crop.
        """
        refined = [
            _refined_crop(p, c, a, self.crop_size)
            for p, c, a in zip(points, crops, anchors, strict=True)
        ]
        changed = [
            i
            for i, (new, old) in enumerate(zip(refined, crops, strict=True))
            if flip or new is not old
        ]
        if changed:
            points[changed], scale[changed] = self._predict_in_images(
                [sources[i] for i in changed], [refined[i] for i in changed], flip=flip
            )
        return refined, points, scale

    def predict_batch(self, crops: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Points and scales for already-cropped faces, in crop pixels.

        Args:
            crops: uint8 ``(N, 3, S, S)`` RGB crops (tensor or array), S = ``crop_size`` (80),
                e.g. ``warp_crop(image, crop)`` transposed to channels-first, made with the
                paper's 5-point rule or :func:`crop_from_detection`.

        Returns:
            ``(points, scale)``, each ``(N, K, 2)`` float64 in crop pixels, (x, y), 0-based,
            pixel centres at integers. Map back with ``Crop.to_image`` / ``Crop.to_image_scale``.

        Raises:
            LandmarksError naming ``crops``: not a uint8 ``(N, 3, S, S)`` array, or the model's
            output on one of them is not finite.
        """
        array = _as_crops(crops, self.crop_size)
        with self._threads():
            points, scale = self._predict_crops(array)
        _check_predictions(points, scale, lambda i: f"crops[{i}]")
        return points, scale

    def _predict_crops(
        self, crops: np.ndarray, flip: bool | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Points and scales (float64) in crop pixels of uint8 crops ``(N, 3, S, S)``; ``flip``
        (default: ``flip_test``) averages with the mirrored crops."""
        if not (self.flip_test if flip is None else flip):
            points, scale = self._forward(crops)
        else:
            # one network call for the crops and their mirror images (half the calls' overhead)
            count = len(crops)
            both_points, both_scale = self._forward(np.concatenate([crops, crops[..., ::-1]]))
            points, scale = both_points[:count], both_scale[:count]
            flipped_points, flipped_scale = both_points[count:], both_scale[count:]
            # The fitted point_offset (calibrate) corrects the model, not the image: it belongs
            # to each output landmark as it is, so take it off before mirroring and put it back.
            offset = self._point_offset
            if offset is not None:
                flipped_points = flipped_points - offset
            if self._mirror is None:
                self._mirror = _mirror_permutation(self.config.model.num_landmarks)
            unflipped = flipped_points[:, self._mirror]  # a copy
            unflipped[..., 0] = crops.shape[-1] - 1 - unflipped[..., 0]
            if offset is not None:
                unflipped = unflipped + offset
            unflipped_scale = flipped_scale[:, self._mirror]
            # inverse-variance weights (a Laplace's variance is 2 b^2) per point and axis: the
            # more confident of the two estimates counts more (0.02-0.03 NME points, 300W val)
            weight = scale.astype(np.float64) ** -2
            flipped_weight = unflipped_scale.astype(np.float64) ** -2
            points = (points * weight + unflipped * flipped_weight) / (weight + flipped_weight)
            scale = (scale + unflipped_scale) / 2
        return points.astype(np.float64), scale.astype(np.float64)

    def _forward(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 crops -> float32 points and scales in crop pixels: the one backend-specific
        step (ONNX Runtime or PyTorch)."""
        if self._onnx is not None:
            return self._onnx.predict(crops, batch_size=self.batch_size)
        return _torch_forward(self.model, crops, self.batch_size)

    def _predict_in_images(
        self, sources: list[np.ndarray], crops: list[Crop], flip: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Warp each crop from its RGB source image and predict them (averaged with the
        mirrored crops when ``flip``) ``batch_size`` at a time; points and scales in image
        pixels."""
        parts = [
            self._predict_warped(
                sources[start : start + self.batch_size],
                crops[start : start + self.batch_size],
                flip,
            )
            for start in range(0, len(crops), self.batch_size)
        ]
        return np.concatenate([p for p, _ in parts]), np.concatenate([s for _, s in parts])

    def _predict_warped(
        self, sources: list[np.ndarray], crops: list[Crop], flip: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """One batch of ``_predict_in_images``."""
        stacked = np.stack(
            [warp_crop(source, crop) for source, crop in zip(sources, crops, strict=True)]
        ).transpose(0, 3, 1, 2)
        points, scale = self._predict_crops(np.ascontiguousarray(stacked), flip=flip)
        image_points = np.stack([c.to_image(p) for c, p in zip(crops, points, strict=True)])
        image_scale = np.stack([c.to_image_scale(s) for c, s in zip(crops, scale, strict=True)])
        return image_points, image_scale

    @contextmanager
    def _threads(self) -> Iterator[None]:
        """torch's CPU threads set to ``threads`` for the torch backend (an ONNX Runtime session
        has its own), restored afterwards."""
        if self.threads is None or self._onnx is not None:
            yield
            return
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous)


def _check_first_pass(first: Landmarker, refine: int, num_landmarks: int) -> None:
    """LandmarksError (a ValueError) unless ``first`` can make the first estimate for a model
    with ``refine`` passes and ``num_landmarks`` points (see ``Landmarker``'s ``first_pass``)."""
    if not isinstance(first, Landmarker):
        raise LandmarksError(f"first_pass must be a Landmarker, got {type(first).__name__}")
    if first.first_pass is not None or first.refine != 0:
        raise LandmarksError(
            f"first_pass {first.name}: must make one pass from the box (refine 0, no first pass "
            f"of its own), has refine {first.refine}"
        )
    if refine < 1:
        raise LandmarksError("first_pass needs refine >= 1: the model re-crops from its estimate")
    if first.config.model.num_landmarks != num_landmarks:
        raise LandmarksError(
            f"first_pass {first.name}: {first.config.model.num_landmarks} landmarks, "
            f"the model {num_landmarks}"
        )


def _first_pass_landmarker(kwargs: dict[str, Any], backend: str | None) -> Landmarker | None:
    """``kwargs["first_pass"]`` as a Landmarker: None or False (none), a Landmarker, or a
    shipped model's name or a weights / ``.onnx`` file, loaded with ``kwargs``' threads and
    batch size on ``backend`` (one pass from the box, no mirror)."""
    spec = kwargs.get("first_pass")
    if spec is None or spec is False or isinstance(spec, Landmarker):
        return spec or None
    return Landmarker.load(
        str(spec),
        refine=0,
        flip_test=False,
        first_pass=False,
        threads=kwargs.get("threads"),
        batch_size=kwargs.get("batch_size", 64),
        backend=backend,
    )


def default_refine(config: RunConfig) -> int:
    """5-point re-crop passes a model makes unless asked: none when it was trained on the
    detector's crops (``config.data.crop == "detector"``: one pass from the box is what it
    learned), else one (it learned the 5-point crops, which the first pass finds)."""
    return 0 if config.data.crop == "detector" else 1


def check_boxes(boxes: object, width: int, height: int) -> list[Box]:
    """Validate face boxes (x0, y0, x1, y1) against a ``width x height`` image.

    Raises LandmarksError naming ``boxes`` for anything but numbers of shape (N, 4), and naming
    the box and its values for a box that :func:`box_problem` refuses.
    """
    result = []
    for i, row in enumerate(_box_array(boxes)):
        box = _as_box(row)
        problem = box_problem(box, width, height)
        if problem is not None:
            raise LandmarksError(f"boxes[{i}] = {list(box)}: {problem}")
        result.append(box)
    return result


def usable_detections(detections: Iterable[Detection], width: int, height: int) -> list[Detection]:
    """The detections whose boxes can frame a face of a ``width x height`` image (see
    :func:`box_problem`), in their order; the others (e.g. a box of a few pixels) are dropped."""
    return [d for d in detections if box_problem(d.box, width, height) is None]


def box_problem(box: Box, width: int, height: int) -> str | None:
    """Why ``box`` cannot frame a face of a ``width x height`` image, or None when it can.

    Refused: NaN or inf, x1 <= x0 or y1 <= y0, no overlap with the image's extent
    ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``, a side under :data:`MIN_BOX_SIZE` pixels, or a side
    over :data:`MAX_BOX_RATIO` times the image's longer side.
    """
    x0, y0, x1, y1 = box
    if not all(math.isfinite(v) for v in box):
        return "contains NaN or inf"
    box_width, box_height = x1 - x0, y1 - y0
    if box_width <= 0 or box_height <= 0:
        return "needs x1 > x0 and y1 > y0"
    if x1 <= -0.5 or y1 <= -0.5 or x0 >= width - 0.5 or y0 >= height - 0.5:
        return f"lies entirely outside the {width}x{height} image"
    size = f"is {box_width:.6g}x{box_height:.6g} pixels"
    if min(box_width, box_height) < MIN_BOX_SIZE:
        return (
            f"{size}; a face box needs sides of at least {MIN_BOX_SIZE:g} pixels: on a smaller "
            "face the 68 points fall within a pixel or two of each other and mean nothing"
        )
    if max(box_width, box_height) > MAX_BOX_RATIO * max(width, height):
        return (
            f"{size}, over {MAX_BOX_RATIO:g}x the longer side of the {width}x{height} image: "
            "it cannot frame a face of this image"
        )
    return None


def _box_array(boxes: object) -> np.ndarray:
    """``boxes`` as an (N, 4) float64 array (N may be 0); LandmarksError naming it otherwise."""
    expected = f"boxes: expected (N, 4) numbers (x0, y0, x1, y1), got {reprlib.repr(boxes)}"
    try:
        array = np.asarray(boxes)
    except Exception as exc:  # ragged lists, tensors that need grad, ...
        raise LandmarksError(expected) from exc
    if array.ndim > 0 and len(array) == 0:  # no boxes (but [[]] is one empty box: an error)
        return np.zeros((0, 4))
    if array.dtype.kind not in "iuf" or array.ndim != 2 or array.shape[1] != 4:
        raise LandmarksError(f"{expected} (shape {array.shape}, dtype {array.dtype})")
    return array.astype(np.float64)


def _as_box(values: Iterable[float]) -> Box:
    """Four numbers as a box of Python floats."""
    x0, y0, x1, y1 = (float(v) for v in values)
    return x0, y0, x1, y1


def _as_crops(crops: object, size: int) -> np.ndarray:
    """``crops`` (an array, or a torch tensor) as a C-contiguous uint8 ``(N, 3, size, size)``
    array; LandmarksError naming it otherwise."""
    expected = f"crops: expected uint8 (N, 3, {size}, {size})"
    if isinstance(crops, str | bytes) or crops is None:
        raise LandmarksError(f"{expected}, got {type(crops).__name__}")
    try:
        if hasattr(crops, "detach"):  # a torch tensor (torch itself is not imported here)
            crops = crops.detach().cpu().numpy()
        array = np.ascontiguousarray(crops)
    except Exception as exc:  # ragged lists, objects
        raise LandmarksError(f"{expected}, got {type(crops).__name__}") from exc
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[1:] != (3, size, size):
        raise LandmarksError(f"{expected}, got {array.shape} {array.dtype}")
    return array


def _check_predictions(points: np.ndarray, scale: np.ndarray, name: Callable[[int], str]) -> None:
    """LandmarksError naming face ``name(i)`` when its points or scales are not finite or a scale
    is not positive: never hand out meaningless (or infinitely sure) landmarks."""
    bad = ~(np.isfinite(points).all(axis=(1, 2)) & np.isfinite(scale).all(axis=(1, 2)))
    bad |= ~(scale > 0).all(axis=(1, 2))
    if bad.any():
        raise LandmarksError(
            f"{name(int(np.argmax(bad)))}: the model gave non-finite points or a zero scale"
        )


def _refined_crop(points: np.ndarray, current: Crop, anchor: Crop, size: int) -> Crop:
    """The paper's 5-point crop around an estimate (68 points in image pixels).

    Keeps the ``current`` crop when the estimate is not usable: not 68 finite points, degenerate
    (all five points equal), or implausible, which only a failed pass gives: the refined crop is
    more than 2x larger or smaller than the ``anchor`` (the crop of the face's box), or its
    centre lies outside the anchor. Judging every pass against the anchor, not the last crop,
    stops repeated passes (``refine=n``) from shrinking a face to nothing.
    """
    if points.shape[0] != 68:
        return current
    try:
        refined = crop_from_five_points(five_points_from_68(points), size=size)
    except ValueError:  # NaN or inf points, or five equal points
        return current
    ratio = refined.scale / anchor.scale
    x0, y0, x1, y1 = anchor.box
    cx, cy = refined.to_image([[(size - 1) / 2, (size - 1) / 2]])[0]
    if not (0.5 <= ratio <= 2.0 and x0 <= cx <= x1 and y0 <= cy <= y1):
        return current
    return refined


#: ONNX Runtime threads when none are asked for (see ``Landmarker``'s ``threads``).
DEFAULT_ONNX_THREADS = 1


# --- the two backends: ONNX Runtime (see laplace_landmarks.onnx_runtime) and PyTorch --------------
def _onnx_session(
    model: torch.nn.Module | None,
    path: str | Path | None,
    threads: int | None,
    crop_size: int | None = None,
) -> OnnxSession:
    """An ONNX Runtime session on ``path``, or on ``model``'s export (taking ``crop_size`` crops)
    in the cache when ``path`` is None (its interface checked there; the caller checks a given
    file's).

    Raises LandmarksError naming the ONNX file when it cannot be loaded (a cache file is
    rebuilt once first, see ``onnx_cache.cached_session``).
    """
    from laplace_landmarks.onnx_runtime import OnnxSession, require_onnx

    threads = DEFAULT_ONNX_THREADS if threads is None else threads
    if path is not None:
        return OnnxSession(path, threads)
    # only a torch model without an .onnx file needs the export cache (and so the exporter)
    require_onnx()  # exporting needs onnx and onnxscript too
    from laplace_landmarks.onnx_cache import cached_session

    return cached_session(model, threads, crop_size=crop_size)


def _load_torch_generator(path: Path) -> tuple[torch.nn.Module, RunConfig, dict[str, str]]:
    """``checkpoints.load_generator(path)``; LandmarksError naming the file when PyTorch (or
    safetensors) is not installed."""
    try:
        from laplace_landmarks.checkpoints import load_generator
    except ModuleNotFoundError as exc:
        if exc.name not in ("torch", "safetensors"):
            raise
        raise LandmarksError(
            f"{path}: a weights file or checkpoint needs PyTorch ({TORCH_HINT}); the shipped "
            "models and exported .onnx files run without it"
        ) from exc
    return load_generator(path)


def _torch_forward(
    model: torch.nn.Module, crops: np.ndarray, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """The torch backend's network call: uint8 crops -> float32 points and scales."""
    import torch

    from laplace_landmarks.decoding import predict_crops

    points, scale = predict_crops(model, torch.from_numpy(crops), batch_size=batch_size)
    return points.numpy(), scale.numpy()


def _torch_point_offset(model: torch.nn.Module) -> np.ndarray | None:
    """The torch model's fitted ``point_offset`` as a float32 array, or None."""
    from laplace_landmarks.decoding import point_offset

    offset = point_offset(model)
    return None if offset is None else offset.detach().cpu().float().numpy()


def _mirror_permutation(num_landmarks: int) -> np.ndarray:
    from laplace_landmarks.data.markups import MIRROR_PERMUTATIONS

    if num_landmarks not in MIRROR_PERMUTATIONS:
        raise LandmarksError(f"flip_test: no mirror permutation for {num_landmarks} landmarks")
    return np.array(MIRROR_PERMUTATIONS[num_landmarks], dtype=np.int64)
