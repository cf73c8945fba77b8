"""Render the reproduction grid's results page: tables, figures and the paper's claims."""

from __future__ import annotations

import dataclasses
import statistics
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch

from laplace_landmarks.atomic import atomic_write_text
from laplace_landmarks.reproduce.grid import FULL_N, LOSSES, GridOptions, RunSpec, preset

BEGIN, END = "<!-- reproduce:begin -->", "<!-- reproduce:end -->"
QUICK_BEGIN, QUICK_END = "<!-- reproduce-quick:begin -->", "<!-- reproduce-quick:end -->"
SMALL_BEGIN, SMALL_END = "<!-- reproduce-small:begin -->", "<!-- reproduce-small:end -->"
MARKERS = {
    "quick": (QUICK_BEGIN, QUICK_END),
    "small": (SMALL_BEGIN, SMALL_END),
    "full": (BEGIN, END),
}
KINDS = {
    "quick": "QUICK smoke run: tiny grid, few epochs, NOT a result",
    "small": "SMALL grid: short runs; early training, not convergence",
    "full": "full grid",
}
PAPER_NME = {"Softargmax": 4.25, "LaplaceKL": 4.01, "GaussianKL": 4.71, "LaplaceKL+D(all)": 3.91}


def _metrics(result: dict[str, Any]) -> dict[str, float | None]:
    s, c = result["summary"], result["summary"]["calibration"]
    return {
        "nme": s["nme_percent"]["inter-ocular"],
        "nme_ip": s["nme_percent"]["inter-pupil"],
        "auc": s["auc"],
        "fr": 100 * s["failure_rate"],
        "b": result["mean_scale_crop_px"],
        "rho": result["spearman_crop_px"],
        "cov50": 100 * c["coverage_50"],
        "cov90": 100 * c["coverage_90"],
        "n_used": result["run"]["num_unlabeled_used"],
    }


def _stat(specs: list[RunSpec], results: dict, key: str) -> tuple[float | None, float | None]:
    """Mean and sample std (None for one seed) of a metric over the specs' finished seeds."""
    values = [_metrics(results[s.name])[key] for s in specs if s.name in results]
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def _pm(stat: tuple[float | None, float | None], digits: int = 2) -> str:
    mean, std = stat
    if mean is None:
        return "–"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _groups(specs: list[RunSpec]) -> dict[tuple, list[RunSpec]]:
    """Specs grouped over seeds, in grid order."""
    groups: dict[tuple, list[RunSpec]] = {}
    for spec in specs:
        key = dataclasses.astuple(dataclasses.replace(spec, seed=0))
        groups.setdefault(key, []).append(spec)
    return groups


def _seeds_epochs(specs: list[RunSpec], opts: GridOptions) -> str:
    return f"{','.join(str(s.seed) for s in specs)} | {opts.epochs}"


def _n_label(spec: RunSpec, pool: int, used: float | None) -> str:
    if not spec.adversarial:
        return "0 (no D)"
    asked = "all" if spec.num_unlabeled is None else f"{spec.num_unlabeled:,}"
    return f"{asked} of {pool:,} images -> {used:,.0f} faces"


def _table2(data: dict[str, Any]) -> list[str]:
    opts, results = data["options"], data["results"]
    lines = [
        "| model | N (asked -> used) | NME % io | NME % ip | AUC@0.08 | FR@0.08 % | mean b (crop px) "
        "| Spearman | cover 50/90 % | seeds | epochs | command (first seed) |",
        "|" + "---|" * 12,
    ]
    for specs in _groups(data["grid"]["table2"]).values():
        spec, stat = specs[0], (lambda key, s=specs: _stat(s, results, key))
        cover = f"{_pm(stat('cov50'), 1)} / {_pm(stat('cov90'), 1)}"
        row = [
            spec.label,
            _n_label(spec, data["pool"], stat("n_used")[0]),
            _pm(stat("nme")),
            _pm(stat("nme_ip")),
            _pm(stat("auc"), 4),
            _pm(stat("fr"), 1),
            _pm(stat("b")),
            _pm(stat("rho"), 3),
            cover,
            _seeds_epochs(specs, opts),
            f"`{spec.command(opts)}`",
        ]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _table3(data: dict[str, Any]) -> list[str]:
    opts, results, bench = data["options"], data["results"], data["bench"]
    groups = _groups(data["grid"]["table3"])
    labels = list(dict.fromkeys(specs[0].label for specs in groups.values()))
    lines = [
        "| width | params | storage MB (fp32) | faces/s (1 thread, batch 1) | "
        + " | ".join(f"{label} NME %" for label in labels)
        + " | seeds | epochs |",
        "|" + "---|" * (6 + len(labels)),
    ]
    for width in sorted({spec.width for spec in data["grid"]["table3"]}):
        cells = {specs[0].label: specs for specs in groups.values() if specs[0].width == width}
        b = bench[f"{width:g}"]
        row = [
            _fraction(width),
            f"{b['params']:,}",
            f"{b['storage_mb']:.3f}",
            f"{b['fps']:.1f}",
        ]
        row += [_pm(_stat(cells[label], results, "nme")) for label in labels]
        row.append(_seeds_epochs(next(iter(cells.values())), opts))
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines += [f"- `{specs[0].command(opts)}`" for specs in groups.values()]
    return lines


def _fig4(data: dict[str, Any]) -> list[str]:
    opts, results = data["options"], data["results"]
    lines = [
        "| b_t (px) | NME % io | mean b (crop px) | cover 50/90 % | seeds | epochs | command |",
        "|" + "---|" * 7,
    ]
    for specs in _groups(data["grid"]["fig4"]).values():
        stat = lambda key, s=specs: _stat(s, results, key)  # noqa: E731
        cover = f"{_pm(stat('cov50'), 1)} / {_pm(stat('cov90'), 1)}"
        row = [
            f"{specs[0].target_scale:g}",
            _pm(stat("nme")),
            _pm(stat("b")),
            cover,
            _seeds_epochs(specs, opts),
            f"`{specs[0].command(opts)}`",
        ]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _pick(data: dict[str, Any], table: str, loss: str, n: int | None, **match: float) -> list:
    width = match.get("width", data["grid"]["table2"][0].width)
    return [
        s
        for s in data["grid"][table]
        if (s.loss, s.num_unlabeled, s.width, s.target_scale)
        == (loss, n, width, match.get("bt", 1.0))
    ]


def _verdict(better: list, worse: list, results: dict, key: str = "nme") -> tuple[str, str]:
    """("held"/"not held" with a noise note, "a vs b") for mean(better) < mean(worse)."""
    (m1, s1), (m2, s2) = _stat(better, results, key), _stat(worse, results, key)
    if m1 is None or m2 is None:
        return "not measured", "–"
    word = "**held**" if m1 < m2 else "**not held**"
    noise = max(s1 or 0.0, s2 or 0.0)
    if abs(m1 - m2) <= noise:
        word += " (difference within one seed std)"
    elif s1 is None and s2 is None:
        word += " (one seed: no noise estimate)"
    return word, f"{_pm((m1, s1))} vs {_pm((m2, s2))}"


def _claims(data: dict[str, Any]) -> list[str]:
    r = data["results"]
    s0, l0, g0 = (_pick(data, "table2", loss, 0) for loss in LOSSES)
    sa, la = _pick(data, "table2", "softargmax", None), _pick(data, "table2", "laplacekl", None)
    lines = []

    def add(claim: str, verdict: tuple[str, str], what: str) -> None:
        lines.append(f"- {claim}: {verdict[0]} on our data; {what} {verdict[1]}.")

    add(
        "LaplaceKL beats softargmax (paper, 300W full: 4.01 vs 4.25)",
        _verdict(l0, s0, r),
        "test NME % LaplaceKL vs softargmax",
    )
    add(
        "GaussianKL is worse than LaplaceKL (paper: 4.71 vs 4.01)",
        _verdict(l0, g0, r),
        "test NME % LaplaceKL vs GaussianKL",
    )
    add(
        "Unlabelled faces help LaplaceKL (paper: 4.01 -> 3.91 with 70K)",
        _verdict(la, l0, r),
        "test NME % LaplaceKL+D(all) vs LaplaceKL",
    )
    ns = list(dict.fromkeys(s.num_unlabeled for s in data["grid"]["table2"]))
    curve = [_stat(_pick(data, "table2", "laplacekl", n), r, "nme")[0] for n in ns]
    falls = all(a is not None and b is not None and b <= a for a, b in pairwise(curve))
    shown = ", ".join(
        f"N={'all' if n is None else n}: {_pm((m, None))}" for n, m in zip(ns, curve, strict=True)
    )
    lines.append(
        f"- Error falls as N grows (paper: 4.01 -> 3.99 -> 3.96 -> 3.94 -> 3.91): "
        f"{'**held**' if falls else '**not held**'} on our data; LaplaceKL test NME % {shown}."
    )
    gain_l = _paired_gains(l0, la, r)
    gain_s = _paired_gains(s0, sa, r)
    if gain_l and gain_s:
        held = statistics.fmean(gain_l) > statistics.fmean(gain_s)
        lines.append(
            f"- LaplaceKL gains more from unlabelled faces than softargmax: "
            f"{'**held**' if held else '**not held**'} on our data; NME gain from +D(all) "
            f"{statistics.fmean(gain_l):.2f} (LaplaceKL) vs {statistics.fmean(gain_s):.2f} "
            f"(softargmax) points."
        )
    add(
        "Confidence: LaplaceKL+D heatmaps spread less than softargmax+D (paper: 1.02 vs 2.59 px)",
        _verdict(la, sa, r, "b"),
        "mean predicted b (80x80 crop px) LaplaceKL+D vs softargmax+D",
    )
    lines += _width_claims(data)
    scales = sorted({s.target_scale for s in data["grid"]["fig4"]})
    means = [_stat(_pick(data, "fig4", "laplacekl", 0, bt=b), r, "nme")[0] for b in scales]
    if any(m is None for m in means):
        lines.append("- The best target scale b_t is about 1 px (paper Fig. 4): not measured.")
        return lines
    best = scales[min(range(len(scales)), key=lambda i: means[i])]
    lines.append(
        f"- The best target scale b_t is about 1 px (paper Fig. 4): "
        f"{'**held**' if best == 1.0 else '**not held**'} on our data; best b_t = {best:g} px "
        f"(NME % " + ", ".join(f"{b:g}: {m:.2f}" for b, m in zip(scales, means, strict=True)) + ")."
    )
    return lines


def _paired_gains(base: list[RunSpec], other: list[RunSpec], results: dict) -> list[float]:
    """NME(base) - NME(other) per seed, over the seeds both finished."""
    a = {s.seed: _metrics(results[s.name])["nme"] for s in base if s.name in results}
    b = {s.seed: _metrics(results[s.name])["nme"] for s in other if s.name in results}
    return [a[seed] - b[seed] for seed in sorted(a.keys() & b.keys())]


def _width_claims(data: dict[str, Any]) -> list[str]:
    r, widths = data["results"], sorted({s.width for s in data["grid"]["table3"]})

    def nme(loss: str, n: int | None, w: float) -> float | None:
        return _stat(_pick(data, "table3", loss, n, width=w), r, "nme")[0]

    lk = [nme("laplacekl", 0, w) for w in widths]
    sm = [nme("softargmax", 0, w) for w in widths]
    ld = [nme("laplacekl", None, w) for w in widths]

    def verdict(pairs: list) -> tuple[str, int, int]:
        measured = [a < b for a, b in pairs if a is not None and b is not None]
        if len(measured) < len(pairs):
            return "not measured at every width", sum(measured), len(measured)
        return ("**held**" if all(measured) else "**not held**"), sum(measured), len(measured)

    beat, beat_d = verdict(list(zip(lk, sm, strict=True))), verdict(list(zip(ld, lk, strict=True)))
    complete = all(v is not None for v in lk)
    mono = complete and all(b <= a for a, b in pairwise(lk))
    names = ", ".join(f"{w:g}" for w in widths)
    return [
        f"- LaplaceKL beats softargmax at every width (paper Table 3): {beat[0]} on our data; "
        f"held at {beat[1]} of {beat[2]} measured widths ({names}).",
        f"- LaplaceKL+D beats LaplaceKL at every width (paper Table 3): {beat_d[0]} on our data; "
        f"held at {beat_d[1]} of {beat_d[2]} measured widths.",
        f"- Wider is better (paper Table 3: 7.38 -> 4.01 from 1/16 to 1): "
        f"{('**held**' if mono else '**not held**') if complete else 'not measured'} on our "
        "data; LaplaceKL NME % "
        + ", ".join(f"{w:g}: {_pm((v, None))}" for w, v in zip(widths, lk, strict=True))
        + ".",
    ]


def _figures(data: dict[str, Any], folder: Path, prefix: str) -> dict[str, Path]:
    from laplace_landmarks.plots import new_figure, plot_ced, save_figure

    r, errors = data["results"], {}
    for specs in _groups(data["grid"]["table2"]).values():
        if specs[0].num_unlabeled in (0, None) and specs[0].name in r:
            per_face = [e for e in r[specs[0].name]["per_face_nme"] if e == e]
            errors[f"{specs[0].label} (seed {specs[0].seed})"] = per_face
    ced = plot_ced(errors, folder / f"{prefix}-ced.png")
    fig = new_figure()
    ax = fig.add_subplot()
    groups = list(_groups(data["grid"]["fig4"]).values())
    stats = [_stat(specs, r, "nme") for specs in groups]
    xs = [
        specs[0].target_scale for specs, (m, _) in zip(groups, stats, strict=True) if m is not None
    ]
    stats = [stat for stat in stats if stat[0] is not None]
    ax.errorbar(xs, [m for m, _ in stats], yerr=[s or 0.0 for _, s in stats], fmt="o-")
    ax.set(
        xscale="log",
        xlabel="target scale b_t (px, 80x80 crop)",
        ylabel="test NME % (io)",
        title="LaplaceKL: b_t sweep",
    )
    ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.tick_params(axis="x", which="minor", labelbottom=False)
    ax.grid(alpha=0.3)
    return {"ced": ced, "bt": save_figure(fig, folder / f"{prefix}-bt-sweep.png")}


def _header(data: dict[str, Any]) -> list[str]:
    """The section's bullet list: command, data, protocol, pool, machine."""
    import os
    import platform

    opts = data["options"]
    first = next(iter(data["results"].values()))
    collapsed = [n for n in FULL_N if n and n >= data["pool"]]
    same = (
        f" N = {', '.join(f'{n:,}' for n in collapsed)} asks for at least the whole pool, so "
        "it is the N = all run."
        if collapsed and preset(opts) == "full"
        else ""
    )
    d = "" if opts.d_width is None else f"; discriminator base width {opts.d_width}"
    d += "" if opts.d_batch_size is None else f", {opts.d_batch_size} unlabelled faces per step"
    d += (
        ""
        if opts.d_every is None
        else f", D and G's adversarial term on every {opts.d_every}th batch"
    )
    missing = data.get("missing", [])
    partial = (
        [
            f"- **Partial grid:** {len(missing)} of {len(missing) + len(data['results'])} runs had "
            "not finished when this page was written (`--report-only`); their cells show '–' and "
            "claims that need them say 'not measured'. Missing: "
            + ", ".join(f"`{name}`" for name in missing)
            + "."
        ]
        if missing
        else []
    )
    return partial + [
        f"- **Command:** `{opts.command}` (written {time.strftime('%Y-%m-%d %H:%M')}).",
        f"- **Seeds:** {opts.seeds}; **epochs:** {opts.epochs}; **training faces:** "
        + (f"the first {opts.max_train}" if opts.max_train else "all")
        + f" of ytf68 `trainval-train`; batch size {opts.batch_size or 'recipe (32)'}{d}; "
        "paper recipes otherwise (Adam 1e-3, no augmentation, no LR drop).",
        "- **Protocol:** ytf68 `train.csv` split by identity into `trainval-train` / `val`; the "
        "best epoch is picked on `val`, and only that checkpoint is scored on the ytf68 **test** "
        f"split ({first['summary']['num_faces']} faces, ground-truth 5-point crops, NME in image "
        "pixels; io = inter-ocular, points 36 and 45; ip = inter-pupil). No hyperparameter is "
        "chosen on test. The ytf68 points were most likely produced by an automatic detector "
        "and rounded to whole pixels.",
        f"- **Unlabelled pool:** `{opts.unlabeled}` ({data['pool']:,} images; N counts the "
        "images asked for, 'used' the faces dlib detects in them). Not `unlabeled/lfw`: its "
        f"images carry a drawn green box and landmark dots, a trivial cue for D.{same}",
        f"- **Machine:** {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}; "
        f"training threads {opts.threads or 'default'}; faces/s single-thread batch 1 over "
        f"{opts.bench_seconds:g} s per width (noisy on a shared machine).",
        "- Cells are mean ± sample std over seeds. Run folders (with `config.json`, "
        f"`metrics.csv`, `test-eval.json`) are under `{opts.out}`.",
    ]


def _fraction(width: float) -> str:
    """1/16, 1/2, 1 for the usual widths; the decimal otherwise."""
    if width == 1:
        return "1"
    inverse = 1 / width
    return f"1/{round(inverse)}" if abs(inverse - round(inverse)) < 1e-9 else f"{width:g}"


def render_section(data: dict[str, Any], results_path: Path) -> str:
    """The markdown section (with its markers) for the grid's results."""
    opts = data["options"]
    kind = preset(opts)
    prefix = "reproduce" if kind == "full" else f"reproduce-{kind}"
    figures = _figures(data, results_path.parent / "figures", prefix)
    link = {k: v.relative_to(results_path.parent).as_posix() for k, v in figures.items()}
    width = _fraction(data["grid"]["table2"][0].width)
    begin, end = MARKERS[kind]
    lines = [begin, f"## Reproduction grid on ytf68 ({KINDS[kind]})", "", *_header(data), ""]
    lines += [f"### Table 2 analogue: loss x unlabelled faces (width {width})", ""]
    lines += _table2(data) + ["", f"![CED]({link['ced']})", ""]
    lines += ["### Table 3 analogue: width", ""] + _table3(data) + [""]
    lines += [f"### Fig. 4 analogue: target scale b_t (LaplaceKL, width {width})", ""]
    lines += _fig4(data) + ["", f"![b_t sweep]({link['bt']})", ""]
    lines += ["### The paper's claims (SPEC §8) on our data", ""]
    if kind == "quick":
        lines += ["Quick run: these verdicts only show the pipeline works; they mean nothing.", ""]
    elif kind == "small":
        lines += [
            f"Small grid: each verdict is about the first {opts.epochs} epochs (Table 2 and "
            f"Fig. 4 at width {width}; Table 3 at widths "
            + ", ".join(_fraction(w) for w in sorted({s.width for s in data["grid"]["table3"]}))
            + "; paper recipes: no augmentation, constant LR), not about converged models. It "
            "says which way each comparison leans early in training, with the seed spread beside "
            "it.",
            "",
        ]
    return "\n".join(lines + _claims(data) + ["", end]) + "\n"


def replace_section(text: str, section: str, begin: str, end: str) -> str:
    """Replace the text between ``begin`` and ``end`` (inclusive), or append the section."""
    start, stop = text.find(begin), text.find(end)
    if start >= 0 and stop > start:
        return text[:start] + section.rstrip("\n") + text[stop + len(end) :]
    return text.rstrip("\n") + ("\n\n" if text.strip() else "") + section


def write_results(data: dict[str, Any]) -> Path:
    """Write (or replace) the grid's marked section in the results markdown, atomically."""

    opts = data["options"]
    path = Path(opts.results)
    begin, end = MARKERS[preset(opts)]
    old = path.read_text() if path.exists() else "# Results\n"
    text = replace_section(old, render_section(data, path), begin, end)
    atomic_write_text(path, text)
    return path
