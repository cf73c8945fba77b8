"""Where the detector path loses accuracy against ground-truth crops (ytf68 val only).

Read-outs behind docs/results.md, "Where the detector path loses 0.4 points":

    python benchmarks/path_gap.py jitter  --model rcn-lite-accurate   # random mis-alignment
    python benchmarks/path_gap.py recrop  --model rcn-lite-accurate   # GT crop, then re-crops
    python benchmarks/path_gap.py passes  --model rcn-lite-accurate   # detector path variants
    python benchmarks/path_gap.py decode  --model FILE ...            # global vs window softargmax
    python benchmarks/path_gap.py ensemble --model FILE FILE ...      # flip and point averaging
    python benchmarks/path_gap.py flips   --model rcn-lite-accurate   # mirror which pass; jitter
    python benchmarks/path_gap.py cross   --model rcn-lite-accurate rcn-lite-medium rcn-lite
    python benchmarks/path_gap.py rules   --model rcn-lite-accurate   # other re-crop rules

``--model`` takes shipped names or weights files. NME is inter-ocular, in % (image pixels for
the Landmarker read-outs, crop pixels = image pixels for the cached crops). Never run on test.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch

from laplace_landmarks import Landmarker
from laplace_landmarks.checkpoints import load_generator, resolve_checkpoint
from laplace_landmarks.config import resolve_config
from laplace_landmarks.decoding import predict_crops
from laplace_landmarks.evaluation import nme_per_face
from laplace_landmarks.heatmaps import softargmax, spatial_softmax, to_crop_units
from laplace_landmarks.models import normalize_input
from laplace_landmarks.training import default_cache_dir, prepare_data


def _weights(name: str) -> str:
    return str(resolve_checkpoint(name))


def _landmarker(name: str) -> Landmarker:
    return Landmarker.load(name, refine=True, threads=1, flip_test=False)


def _val_crops():
    return prepare_data(resolve_config("paper-laplacekl", {}), default_cache_dir(), False).val


def _nme(points, truth, visibility) -> float:
    return float(np.nanmean(nme_per_face(np.asarray(points), truth, visibility)) * 100)


def jitter(args: argparse.Namespace) -> None:
    """Cached GT crops, then the same crops randomly mis-aligned; points mapped back."""
    from laplace_landmarks.data.transforms import similarity_matrices, warp_similarity

    val = _val_crops()
    model, _, _ = load_generator(_weights(args.model[0]))
    truth, vis = val.points.numpy(), val.visibility.numpy()
    print(f"GT crops: {_nme(predict_crops(model, val.images)[0].numpy(), truth, vis):.3f}")
    generator = torch.Generator().manual_seed(0)
    for rotation, scale, shift in ((2, 0.01, 0.005), (5, 0.02, 0.01), (10, 0.05, 0.03)):
        matrices = similarity_matrices(len(val), (80, 80), generator, rotation, scale, shift)
        images, _ = warp_similarity(val.images, val.points, matrices)
        predicted = predict_crops(model, images)[0].double()
        full = torch.zeros(len(matrices), 3, 3, dtype=torch.float64)
        full[:, :2], full[:, 2, 2] = matrices, 1.0
        inverse = torch.linalg.inv(full)
        back = predicted @ inverse[:, :2, :2].transpose(1, 2) + inverse[:, None, :2, 2]
        print(f"mis-aligned ±{rotation}°, ±{scale:.0%} scale, ±{shift:.1%} shift: "
              f"{_nme(back.numpy(), truth, vis):.3f}")  # fmt: skip


def _val_images():
    from laplace_landmarks.data.datasets import load_dataset
    from laplace_landmarks.data.images import to_rgb_array

    for sample in load_dataset("ytf68", "val").samples:
        yield sample, to_rgb_array(str(sample.image_path), "image")


def _detector_first_crops(landmarker: Landmarker):
    """(sample, PIL image, first crop) per val image whose detections hold the GT centre."""
    from PIL import Image

    from laplace_landmarks.detection import crop_from_detection

    for sample, rgb in _val_images():
        cx, cy = np.nanmean(sample.points, axis=0)
        boxes = [d.box for d in landmarker.detector(rgb)]
        if boxes:
            box = min(boxes, key=lambda b: np.hypot((b[0] + b[2]) / 2 - cx, (b[1] + b[3]) / 2 - cy))
            yield sample, Image.fromarray(rgb), crop_from_detection(box, landmarker.crop_size)


def _five_point_crop(points: np.ndarray, size: int):
    from laplace_landmarks.data.crops import crop_from_five_points, five_points_from_68

    return crop_from_five_points(five_points_from_68(points), size=size)


def _report(rows: dict[str, list], truth: list, prefix: str = "") -> None:
    truth = np.array(truth)
    for name, points in rows.items():
        print(f"{prefix}{name} ({len(points)} faces): "
              f"{_nme(points, truth, np.ones(truth.shape[:2], bool)):.3f}")  # fmt: skip


def recrop(args: argparse.Namespace) -> None:
    """The GT 5-point crop through the Landmarker's own warp, then one and two re-crops."""
    from PIL import Image

    from laplace_landmarks.data.crops import crop_from_five_points, five_points_from_68

    landmarker = _landmarker(args.model[0])
    rows: dict[str, list] = {"GT crop": [], "then one re-crop": [], "then two re-crops": []}
    truth = []
    for sample, rgb in _val_images():
        pil = Image.fromarray(rgb)
        crop = crop_from_five_points(five_points_from_68(sample.points), size=80)
        points, scale = landmarker._predict_in_image(pil, [crop])
        rows["GT crop"].append(points[0].copy())
        crops, points, scale = landmarker._refine(pil, [crop], points, scale)
        rows["then one re-crop"].append(points[0].copy())
        crops, points, scale = landmarker._refine(pil, crops, points, scale)
        rows["then two re-crops"].append(points[0].copy())
        truth.append(sample.points)
    truth = np.array(truth)
    for name, points in rows.items():
        print(f"{name}: {_nme(points, truth, np.ones(truth.shape[:2], bool)):.3f}")


def passes(args: argparse.Namespace) -> None:
    """Detector path (box holding the GT centre): first pass, re-crops and their averages."""
    landmarker = _landmarker(args.model[0])
    rows: dict[str, list] = {k: [] for k in ("no re-crop", "one re-crop", "two re-crops",
                                            "mean of first pass and one re-crop",
                                            "mean of first and second re-crops")}  # fmt: skip
    truth = []
    for sample, pil, first in _detector_first_crops(landmarker):
        p1, s1 = landmarker._predict_in_image(pil, [first])
        crops, p2, s2 = landmarker._refine(pil, [first], p1.copy(), s1.copy())
        _, p3, _ = landmarker._refine(pil, crops, p2.copy(), s2.copy())
        for name, value in zip(rows, (p1, p2, p3, (p1 + p2) / 2, (p2 + p3) / 2), strict=True):
            rows[name].append(value[0])
        truth.append(sample.points)
    _report(rows, truth)


def _moved(crop, dx: float, dy: float, zoom: float):
    """``crop`` with its content shifted by (dx, dy) crop pixels and zoomed about its centre."""
    from laplace_landmarks.data.crops import Crop

    c = (crop.size - 1) / 2
    move = np.array([[zoom, 0, c - zoom * c + dx], [0, zoom, c - zoom * c + dy], [0, 0, 1]])
    return Crop((move @ np.vstack([crop.matrix, [0, 0, 1]]))[:2], crop.size)


def flips(args: argparse.Namespace) -> None:
    """Detector path with the mirrored average on the first pass, the re-crop pass or both; and
    the re-crop pass averaged over shifted (jitter) or zoomed copies of its crop."""
    lm = _landmarker(args.model[0])
    size = lm.crop_size
    jitters = {
        "plus 1.5 px (5 crops)": [(0, 0, 1), (1.5, 0, 1), (-1.5, 0, 1), (0, 1.5, 1), (0, -1.5, 1)],
        "x pair 1.5 px (2 crops)": [(1.5, 0, 1), (-1.5, 0, 1)],
        "zoom pair 4 % (2 crops)": [(0, 0, 0.96), (0, 0, 1.04)],
    }
    rows: dict[str, list] = {}
    truth = []
    for sample, pil, first in _detector_first_crops(lm):
        for f1 in (False, True):
            p1 = lm._predict_in_image(pil, [first], flip=f1)[0][0]
            crop = _five_point_crop(p1, size)
            for f2 in (False, True):
                p2 = lm._predict_in_image(pil, [crop], flip=f2)[0][0]
                rows.setdefault(f"mirror pass 1: {f1}, pass 2: {f2}", []).append(p2)
            if f1:
                continue
            for name, moves in jitters.items():
                crops = [_moved(crop, *m) for m in moves]
                for f2 in (False, True):
                    p2 = lm._predict_in_image(pil, crops, flip=f2)[0].mean(0)
                    rows.setdefault(f"pass 2 jitter {name}, mirror {f2}", []).append(p2)
        truth.append(sample.points)
    _report(rows, truth, f"{args.model[0]}: ")


def cross(args: argparse.Namespace) -> None:
    """The first model's re-crop pass on 5-point crops made from other estimates: each model's
    first pass and re-crop pass, the mean of two, and the ground truth."""
    models = {name: _landmarker(name) for name in args.model}
    main_name, main = args.model[0], models[args.model[0]]
    rows: dict[str, list] = {}
    truth = []
    for sample, pil, first in _detector_first_crops(main):
        estimates = {}
        for name, lm in models.items():
            p1 = lm._predict_in_image(pil, [first])[0][0]
            estimates[f"{name} pass 1"] = p1
            crop = _five_point_crop(p1, lm.crop_size)
            estimates[f"{name} pass 2"] = lm._predict_in_image(pil, [crop])[0][0]
        if len(models) > 1:
            a, b = args.model[:2]
            estimates[f"mean of {a} and {b} pass 1"] = (
                estimates[f"{a} pass 1"] + estimates[f"{b} pass 1"]
            ) / 2
        estimates["ground truth"] = sample.points
        for name, estimate in estimates.items():
            crop = _five_point_crop(estimate, main.crop_size)
            if name != "ground truth":
                rows.setdefault(f"the estimate {name} itself", []).append(estimate)
            for flip in (False, True):
                p = main._predict_in_image(pil, [crop], flip=flip)[0][0]
                key = f"{main_name} (mirror {flip}) on the crop from {name}"
                rows.setdefault(key, []).append(p)
        truth.append(sample.points)
    _report(rows, truth)


def rules(args: argparse.Namespace) -> None:
    """Other re-crop rules from the first pass: the 5 points of the train mean shape fitted to
    the estimate (similarity, least squares, optionally weighted by 1/b^2), and the re-crop pass
    pushed away from the crop's mean shape by beta (undoing a shrink towards it)."""
    from laplace_landmarks.config import resolve_config

    lm = _landmarker(args.model[0])
    size = lm.crop_size
    train = prepare_data(resolve_config("paper-laplacekl", {}), default_cache_dir(), False).train
    mean_shape = train.points.double().mean(0).numpy()  # crop pixels of the 5-point GT crops

    def fitted(points, weights):
        w = weights / weights.sum()
        ms, mp = w @ mean_shape, w @ points
        s, d = mean_shape - ms, points - mp
        norm = w @ (s**2).sum(1)
        a = (w @ (s * d).sum(1)) / norm
        b = (w @ (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0])) / norm
        return s @ np.array([[a, -b], [b, a]]).T + mp

    rows: dict[str, list] = {}
    truth = []
    for sample, pil, first in _detector_first_crops(lm):
        p1, s1 = (v[0] for v in lm._predict_in_image(pil, [first]))
        uniform, inverse = np.ones(len(p1)), 1 / np.maximum(s1.mean(1), 1e-3) ** 2
        crops = {
            "paper's rule (shipped)": _five_point_crop(p1, size),
            "fitted mean shape": _five_point_crop(fitted(p1, uniform), size),
            "fitted mean shape, 1/b^2 weights": _five_point_crop(fitted(p1, inverse), size),
        }
        for name, crop in crops.items():
            p2 = lm._predict_in_image(pil, [crop])[0][0]
            rows.setdefault(f"re-crop by {name}", []).append(p2)
            if name.startswith("paper"):
                prior = crop.to_image(mean_shape)
                for beta in (-0.1, 0.05, 0.1, 0.2):
                    rows.setdefault(f"paper's rule, beta {beta:+.2f}", []).append(
                        p2 + beta * (p2 - prior)
                    )
        truth.append(sample.points)
    _report(rows, truth, f"{args.model[0]}: ")


def decode(args: argparse.Namespace) -> None:
    """Softargmax over the whole heatmap against a window of radius r around the arg-max."""
    val = _val_crops()
    truth, vis = val.points.numpy(), val.visibility.numpy()
    for name in args.model:
        model, _, _ = load_generator(_weights(name))
        stride = int(getattr(model.config, "output_stride", 1))
        with torch.inference_mode():
            logits = torch.cat(
                [model(normalize_input(val.images[i : i + 64])) for i in range(0, len(val), 64)]
            )
        probs = spatial_softmax(logits)
        height, width = probs.shape[-2:]

        def score(mean, stride=stride, offset=model.point_offset):
            mean = to_crop_units(mean, stride) if stride != 1 else mean
            return _nme((mean + offset).numpy(), truth, vis)

        cells = [f"global {score(softargmax(probs)):.3f}"]
        flat = probs.flatten(2).argmax(-1)
        ay, ax = (flat // width).float(), (flat % width).float()
        ys = torch.arange(height).float().view(1, 1, height, 1)
        xs = torch.arange(width).float().view(1, 1, 1, width)
        for radius in (1, 2, 3, 4, 6, 8):
            near = ((ys - ay[..., None, None]).abs() <= radius) & (
                (xs - ax[..., None, None]).abs() <= radius
            )
            window = probs * near
            cells.append(f"r={radius} {score(softargmax(window / window.sum((2, 3), True))):.3f}")
        print(f"{name}: " + ", ".join(cells))


def ensemble(args: argparse.Namespace) -> None:
    """Flip averaging per model, and the mean points of every pair (and all) of the models."""
    val = _val_crops()
    truth, vis = val.points.numpy(), val.visibility.numpy()
    predictions = {}
    for name in args.model:  # flip averaging as Landmarker(flip_test=True) does it
        model, config, _ = load_generator(_weights(name))
        plain = Landmarker(model, config).predict_batch(val.images)[0]
        flip = Landmarker(model, config, flip_test=True).predict_batch(val.images)[0]
        predictions[name] = (plain, flip)
        print(f"{name}: plain {_nme(plain, truth, vis):.3f}, flip {_nme(flip, truth, vis):.3f}")
    names = list(predictions)
    combos = [c for k in range(2, len(names) + 1) for c in itertools.combinations(names, k)]
    for combo in [c for c in combos if len(c) == 2 or len(c) == len(names)]:
        plain = sum(predictions[n][0] for n in combo) / len(combo)
        flip = sum(predictions[n][1] for n in combo) / len(combo)
        print(f"mean of {' + '.join(combo)}: plain {_nme(plain, truth, vis):.3f}, "
              f"flip {_nme(flip, truth, vis):.3f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "readout",
        choices=("jitter", "recrop", "passes", "decode", "ensemble", "flips", "cross", "rules"),
    )
    parser.add_argument("--model", nargs="+", default=["rcn-lite-accurate"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    globals()[args.readout](args)


if __name__ == "__main__":
    main()
