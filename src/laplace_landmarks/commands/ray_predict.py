"""``laplace-landmarks ray-predict MANIFEST --out DIR``: a large job on a Ray cluster.

Reads a CSV manifest (``path`` and optional ``x0,y0,x1,y1`` columns; see
``laplace_landmarks.manifest``), predicts every image on ``--workers`` Ray actors (one model and
one CPU each) and writes Parquet or JSON shards, one row per image, into the new folder ``--out``.
Without ``--address`` a local Ray runtime is started for the job; ``--address auto`` joins the
cluster of this machine (``ray start --head`` / ``ray start --address HEAD:6379`` on the others),
``--address ray://HEAD:10001`` one through Ray Client. On a multi-node cluster the images and
``--out`` must be on storage every node sees at the same path. Needs
``pip install "laplace-landmarks[ray]"``. Exit 0 when at least one image was processed, else 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from laplace_landmarks.commands.arguments import plain


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``ray-predict`` command."""
    parser = subparsers.add_parser(
        "ray-predict",
        help="landmarks for a CSV manifest of images on a Ray cluster (Parquet/JSON shards)",
        description=plain(__doc__.split("\n\n", 1)[1]),
    )
    parser.add_argument("manifest", type=Path, metavar="MANIFEST", help="CSV: path[,x0,y0,x1,y1]")
    parser.add_argument("--out", type=Path, required=True, help="new or empty output folder")
    parser.add_argument("--workers", type=int, default=1, help="model actors, one CPU each")
    parser.add_argument(
        "--address", default=None, help='Ray cluster: "auto", "ray://HOST:10001" (default: local)'
    )
    parser.add_argument(
        "--format",
        choices=("parquet", "json"),
        default="parquet",
        help="shard file format (default parquet)",
    )
    parser.add_argument("--model", default=None, help="shipped model name or weights path")
    parser.add_argument("--batch-size", type=int, default=16, help="images per batch")
    parser.add_argument(
        "--backend",
        choices=("torch", "onnx"),
        default=None,
        help="run the model with ONNX Runtime (default for shipped models) or torch (default "
        "for weights files)",
    )
    parser.set_defaults(func=run_ray_predict)


def run_ray_predict(args: argparse.Namespace) -> int:
    """Run the job and print its summary."""
    from laplace_landmarks.ray_job import run_ray_job

    summary = run_ray_job(
        args.manifest,
        args.out,
        workers=args.workers,
        address=args.address,
        fmt=args.format,
        model=args.model,
        batch_size=args.batch_size,
        backend=args.backend,
        progress=True,
    )
    print(f"{summary}; shards in {args.out}")
    return 0 if summary.images > summary.errors else 2
