"""Large jobs on a Ray cluster: a manifest mapped over model-holding actors, written as shards.

Needs the optional Ray Data dependency (``pip install "laplace-landmarks[ray]"``); Ray is imported
only when a job runs, and a missing Ray is a one-line :class:`LandmarksError`.

How it runs: the driver reads and validates the manifest (:func:`~laplace_landmarks.manifest.
read_manifest`; a bad row stops the job before anything starts), turns it into a Ray Dataset of
one row per image (blocks of ``batch_size`` images), and maps it with ``map_batches`` over a
fixed pool of ``workers`` actors (:class:`LandmarkActor`). Each actor takes one CPU and loads the
model once, with one thread, so ``workers`` actors use ``workers`` cores without
oversubscribing them; each batch is predicted with
:func:`~laplace_landmarks.manifest.predict_records` (the faces of a group of images go through
the network together; the results are those of ``Landmarker.predict``) and comes back as an
Arrow table of :func:`record_schema`. The results are written as Parquet or JSON
(newline-delimited) shards into ``out_dir`` (``write_parquet`` / ``write_json``), one row per
image: ``path`` (as written in the manifest), ``width``, ``height``, ``faces`` (``box``,
``score``, ``points``, ``scale``, in image pixels, (x, y), 0-based, pixel centres at integers)
and ``error`` (null unless the image failed; then ``faces`` is null). The summary is counted from
the shards written.

Clusters: a job run in a process that already called ``ray.init`` uses that runtime (whatever
``address``). Otherwise ``address=None`` starts a local runtime for the job (or joins
``$RAY_ADDRESS`` when set) and stops it afterwards; ``address="auto"`` joins the cluster of this machine, ``"ray://HEAD:10001"`` one through Ray
Client (which also needs ``pip install "ray[client]"``). The same code runs on many machines::

    # on the head node                          # on every other node
    ray start --head --num-cpus 16              ray start --address HEAD:6379 --num-cpus 16
    laplace-landmarks ray-predict /shared/manifest.csv --out /shared/out \\
        --address auto --workers 32

Every node needs the same Python environment (``pip install "laplace-landmarks[ray]"``), and the
manifest's images and ``out_dir`` must be visible at the same paths on every node (shared
storage such as NFS): relative manifest paths are made absolute on the driver, and each node's
actors read images and write shards themselves. Ray schedules one actor per free CPU, so
``workers`` should not exceed the cluster's CPUs (extra actors wait).

Example:
    >>> from laplace_landmarks.ray_job import run_ray_job
    >>> summary = run_ray_job("manifest.csv", "out/", workers=2)  # doctest: +SKIP
    >>> print(summary)                                            # doctest: +SKIP
    1200 images, 1187 faces, 3 errors in 24.0 s (50.0 images/s)
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from laplace_landmarks.errors import LandmarksError
from laplace_landmarks.manifest import JobSummary, ManifestItem, predict_records, read_manifest

FORMATS = ("parquet", "json")
INSTALL_HINT = 'pip install "laplace-landmarks[ray]"'


def require_ray() -> ModuleType:
    """Import and return ``ray`` (with Ray Data), or raise a LandmarksError saying how to get it.

    Example:
        >>> ray = require_ray()  # doctest: +SKIP
    """
    try:
        import ray
        import ray.data  # noqa: F401 (Ray Data is a separate extra of ray)
    except ImportError as exc:
        raise LandmarksError(f"Ray jobs need Ray Data ({exc}): {INSTALL_HINT}") from exc
    return ray


def record_schema() -> Any:
    """The Arrow schema of one output row (one image).

    Example:
        >>> record_schema().names  # doctest: +SKIP
        ['path', 'width', 'height', 'faces', 'error']
    """
    import pyarrow as pa

    pairs = pa.list_(pa.list_(pa.float64()))
    face = pa.struct(
        [
            ("box", pa.list_(pa.float64())),
            ("score", pa.float64()),
            ("points", pairs),
            ("scale", pairs),
        ]
    )
    return pa.schema(
        [
            ("path", pa.string()),
            ("width", pa.int64()),
            ("height", pa.int64()),
            ("faces", pa.list_(face)),
            ("error", pa.string()),
        ]
    )


class LandmarkActor:
    """A Ray Data actor: loads the landmarker once (one torch thread) and predicts batches.

    Args:
        model: a shipped model name or weights path (None: the default model).
        landmarker_kwargs: more ``Landmarker.load`` arguments (``backend``, ``refine``, ...).

    Example:
        >>> actor = LandmarkActor()                                         # doctest: +SKIP
        >>> actor({"path": ["a.jpg"], "file": ["/data/a.jpg"], "boxes": [""]})  # doctest: +SKIP
        pyarrow.Table ...
    """

    def __init__(self, model: str | None = None, **landmarker_kwargs: Any) -> None:
        from laplace_landmarks.inference import Landmarker

        self.landmarker = Landmarker.load(model, threads=1, **landmarker_kwargs)
        self.schema = record_schema()

    def __call__(self, batch: dict[str, Any]) -> Any:
        """Rows ``path, file, boxes`` (see :func:`item_row`) -> an Arrow table of records."""
        import pyarrow as pa

        columns = (batch["path"], batch["file"], batch["boxes"])
        items = [row_item(path, file, boxes) for path, file, boxes in zip(*columns, strict=True)]
        records = predict_records(self.landmarker, items)
        return pa.Table.from_pylist(records, schema=self.schema)


def item_row(item: ManifestItem) -> dict[str, str]:
    """A manifest item as a Dataset row: ``path``, ``file`` and ``boxes`` (JSON, "" = detect)."""
    boxes = "" if item.boxes is None else json.dumps(item.boxes)
    return {"path": item.path, "file": str(item.file), "boxes": boxes}


def row_item(path: str, file: str, boxes: str) -> ManifestItem:
    """The inverse of :func:`item_row` (the line number is not carried: 0)."""
    parsed = None if not boxes else tuple(tuple(box) for box in json.loads(boxes))
    return ManifestItem(str(path), Path(file), parsed, 0)


def run_ray_job(
    manifest: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    workers: int = 1,
    address: str | None = None,
    fmt: str = "parquet",
    model: str | None = None,
    batch_size: int = 16,
    rows_per_file: int = 1000,
    progress: bool = False,
    **landmarker_kwargs: Any,
) -> JobSummary:
    """Predict every image of ``manifest`` on Ray, writing Parquet or JSON shards to ``out_dir``.

    Args:
        manifest: a manifest CSV (see :mod:`laplace_landmarks.manifest`).
        out_dir: a new or empty folder for the shards (on shared storage for a multi-node
            cluster).
        workers: actors, each holding one model and using one CPU.
        address: a Ray cluster to join ("auto", "ray://host:10001", ...); None: a local
            runtime for this job. Unused when this process already called ``ray.init``.
        fmt: "parquet" or "json" (newline-delimited).
        model: a shipped model name or weights path (None: the default model).
        batch_size: images per batch (and per Dataset block): large enough that each batch's
            work dwarfs Ray's per-batch overhead (a batch is ~0.5 s at 16), small enough to
            spread over the actors (a job of fewer than ``workers * batch_size`` images gets
            smaller batches).
        rows_per_file: images per shard, at least (the last shard of a writer may hold fewer).
        progress: show Ray Data's progress bars.
        landmarker_kwargs: more ``Landmarker.load`` arguments (``backend``, ``refine``,
            ``flip_test``); ``threads`` is always 1.

    Returns:
        The :class:`~laplace_landmarks.manifest.JobSummary`, counted from the shards; ``seconds``
        runs from connecting to Ray to the last shard written.

    Raises:
        LandmarksError: Ray missing, a bad manifest or argument, an unknown model, a non-empty
            ``out_dir``.

    Example:
        >>> run_ray_job("manifest.csv", "/shared/out", workers=32, address="auto")  # doctest: +SKIP
    """
    _check_arguments(workers, fmt, batch_size, rows_per_file)
    ray = require_ray()
    items = read_manifest(manifest)
    out = _empty_folder(Path(out_dir))
    LandmarkActor(model, **landmarker_kwargs)  # a bad model: one line here, not actor crashes
    with _ray_runtime(ray, address, workers):
        start = time.perf_counter()
        _configure_data(ray, progress)
        rows = [item_row(item) for item in items]
        batch = min(batch_size, math.ceil(len(rows) / workers))  # a small job still uses all
        dataset = ray.data.from_items(rows, override_num_blocks=math.ceil(len(rows) / batch))
        results = dataset.map_batches(
            LandmarkActor,
            fn_constructor_kwargs={"model": model, **landmarker_kwargs},
            batch_size=batch,
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=1,
        )
        # Writers reserve no CPU: with every CPU held by an actor they would otherwise wait for
        # the last batch, holding all results in the object store until then.
        write = getattr(results, f"write_{fmt}")
        write(str(out), min_rows_per_file=rows_per_file, ray_remote_args={"num_cpus": 0})
        seconds = time.perf_counter() - start
    return summarise_shards(out, fmt, seconds)


def summarise_shards(out_dir: str | os.PathLike[str], fmt: str, seconds: float) -> JobSummary:
    """Count images, faces and errors in the shards of ``out_dir``.

    Example:
        >>> summarise_shards("out/", "parquet", seconds=0.0)  # doctest: +SKIP
    """
    import pyarrow.compute as pc

    table = read_shards(out_dir, fmt, columns=["faces", "error"])
    faces = pc.sum(pc.list_value_length(table.column("faces"))).as_py() or 0
    errors = table.num_rows - table.column("error").null_count
    return JobSummary(table.num_rows, faces, errors, seconds)


def read_shards(out_dir: str | os.PathLike[str], fmt: str, columns: list[str] | None = None) -> Any:
    """All shards of a job as one Arrow table (JSON shards are read with :func:`record_schema`).

    Example:
        >>> read_shards("out/", "parquet").to_pylist()[0]["path"]  # doctest: +SKIP
    """
    import pyarrow.dataset as ds
    import pyarrow.json as pj

    schema = record_schema()
    if fmt == "json":
        options = pj.ParseOptions(explicit_schema=schema)
        source = ds.dataset(out_dir, schema, format=ds.JsonFileFormat(parse_options=options))
    else:
        source = ds.dataset(out_dir, schema, format=fmt)
    return source.to_table(columns=columns)


def _check_arguments(workers: int, fmt: str, batch_size: int, rows_per_file: int) -> None:
    if fmt not in FORMATS:
        raise LandmarksError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    for name, value in (
        ("workers", workers),
        ("batch_size", batch_size),
        ("rows_per_file", rows_per_file),
    ):
        if value < 1:
            raise LandmarksError(f"{name} must be >= 1, got {value}")


def _empty_folder(out: Path) -> Path:
    """``out`` made absolute; refuses a file or a folder that already holds something."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LandmarksError(f"{out} exists and is not an empty folder; write to a new one")
    return out.absolute()


@contextmanager
def _ray_runtime(ray: ModuleType, address: str | None, workers: int) -> Iterator[None]:
    """Join ``address``, or the runtime already running, or start a local one; stop what we
    started."""
    if ray.is_initialized():
        yield
        return
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    except (ConnectionError, ValueError, RuntimeError) as exc:  # no cluster, no Ray Client, ...
        where = f" at {address}" if address else ""
        raise LandmarksError(
            f"cannot start or join Ray{where}: {' '.join(str(exc).split())}"
        ) from exc
    try:
        cpus = ray.cluster_resources().get("CPU", 0)
        if address is None and workers > cpus:
            raise LandmarksError(f"workers={workers} but this machine has {cpus:g} CPUs for Ray")
        yield
    finally:
        ray.shutdown()


def _configure_data(ray: ModuleType, progress: bool) -> None:
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = progress
