"""Where the detector path loses accuracy against ground-truth crops (ytf68 val only).

Read-outs behind docs/results.md, "Where the detector path loses 0.4 points":

    python benchmarks/path_gap.py jitter  --model rcn-lite-accurate   # random mis-alignment
    python benchmarks/path_gap.py recrop  --model rcn-lite-accurate   # GT crop, then re-crops
    python benchmarks/path_gap.py passes  --model rcn-lite-accurate   # detector path variants
    python benchmarks/path_gap.py decode  --model FILE ...            # global vs window softargmax
    python benchmarks/path_gap.py ensemble --model FILE FILE ...      # flip and point averaging

``--model`` takes shipped names or weights files. NME is inter-ocular, in % (image pixels for
the Landmarker read-outs, crop pixels = image pixels for the cached crops). Never run on test.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch

from laplace_landmarks import Landmarker
from laplace_landmarks.checkpoints import load_generator
from laplace_landmarks.commands.predict import load_landmarker
from laplace_landmarks.config import resolve_config
from laplace_landmarks.decoding import predict_crops
from laplace_landmarks.evaluation import nme_per_face
from laplace_landmarks.evaluation_run import resolve_checkpoint
from laplace_landmarks.heatmaps import softargmax, spatial_softmax, to_crop_units
from laplace_landmarks.models import normalize_input
from laplace_landmarks.training import default_cache_dir, prepare_data


def _weights(name: str) -> str:
    return str(resolve_checkpoint(name))


def _landmarker(name: str) -> Landmarker:
    return load_landmarker(name, refine=True, threads=1)


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
    from PIL import Image

    from laplace_landmarks.detection import crop_from_detection

    landmarker = _landmarker(args.model[0])
    rows: dict[str, list] = {k: [] for k in ("no re-crop", "one re-crop", "two re-crops",
                                            "mean of first pass and one re-crop",
                                            "mean of first and second re-crops")}  # fmt: skip
    truth = []
    for sample, rgb in _val_images():
        cx, cy = np.nanmean(sample.points, axis=0)
        boxes = [d.box for d in landmarker.detector(rgb)]
        if not boxes:
            continue
        box = min(boxes, key=lambda b: np.hypot((b[0] + b[2]) / 2 - cx, (b[1] + b[3]) / 2 - cy))
        pil = Image.fromarray(rgb)
        first = crop_from_detection(box, size=landmarker.crop_size)
        p1, s1 = landmarker._predict_in_image(pil, [first])
        crops, p2, s2 = landmarker._refine(pil, [first], p1.copy(), s1.copy())
        _, p3, _ = landmarker._refine(pil, crops, p2.copy(), s2.copy())
        for name, value in zip(rows, (p1, p2, p3, (p1 + p2) / 2, (p2 + p3) / 2), strict=True):
            rows[name].append(value[0])
        truth.append(sample.points)
    truth = np.array(truth)
    for name, points in rows.items():
        print(f"{name} ({len(points)} faces): "
              f"{_nme(points, truth, np.ones(truth.shape[:2], bool)):.3f}")  # fmt: skip


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
    parser.add_argument("readout", choices=("jitter", "recrop", "passes", "decode", "ensemble"))
    parser.add_argument("--model", nargs="+", default=["rcn-lite-accurate"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    globals()[args.readout](args)


if __name__ == "__main__":
    main()
