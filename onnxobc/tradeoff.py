"""Trade-off curves (the LC paper's comparison, post-training): for each compression family at
several levels, every layer compressed at that level (channel removal: every group that can be
cut, by that share), the output error against the dense model
(held-out samples) and against what it costs: the bytes on disk (the compression ratio) and the
latency measured on the runtime. Layers are solved through the database, so an interrupted run
resumes and later budgets reuse them. Writes each model, tradeoff.json and tradeoff.png."""

from __future__ import annotations

import json
import pathlib
import time

from . import families
from .atomic import atomic_path
from .recut import remove_channels
from .db.build import build, from_arrays, level_options, model_key, settings_key
from .db.levels import check_storable, parse, split_channels
from .db.store import Database
from .errors import OptionError
from .export import write
from .graph.write import save_atomic
from .options import Options
from .prepare import prepare
from .protos import check
from .timing import timing_feed
from .verify import outputs, relative_errors


def family_of(name: str) -> str:
    """The trade-off curve a level name is on."""
    return next((label for label, names in families.curves().items() if name in names), "other")


def check_plotting() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise OptionError("the trade-off plot needs matplotlib: pip install 'onnxobc[plot]' (or pass {no_plot} "
                          "for the JSON alone)") from None


def tradeoff(model_path, calib, out_dir, options: Options, levels: list | None = None, plot: bool = True,
             progress=None) -> dict:
    """Every level of `levels` (names; default: every family's curves) applied to all layers;
    returns the report written to out_dir/tradeoff.json."""
    progress = progress or (lambda *a: None)
    options.check(planned=True)
    if plot:
        check_plotting()
    src, out_dir = pathlib.Path(model_path), pathlib.Path(out_dir)
    names = levels or [n for curve in families.curves().values() for n in curve]
    parsed = [parse(n) for n in names]
    # channel levels span layers: made from the Hessians, not the database
    parsed, cut = split_channels(parsed, "a trade-off curve takes channel removal alone")
    check_storable(parsed)
    out_dir.mkdir(parents=True, exist_ok=True)
    if src.resolve().parent == out_dir.resolve() and any(src.name == f"{n}.onnx" for n in names):
        raise OptionError(f"{src} would be overwritten by a level's output; choose another {{out}}")
    t0 = time.perf_counter()
    prep = prepare(src, calib, options, progress, activation_ranges=families.needs_ranges(parsed))
    with Database(out_dir / "db") as db:
        build(prep, db, src, parsed, options, progress)
        mkey, skey = model_key(src), settings_key(prep, options)
        reference = outputs(src, prep.held, options.batch_size, options.custom_ops)
        points, paths = [], {}
        for i, lv in enumerate(parsed + cut):
            progress("write", i, len(parsed) + len(cut), lv.name)
            if lv.channels is None:
                solved = {l.weight: from_arrays(*db.get(mkey, skey, l.weight, lv.name), lv) for l in prep.layers}
                solved = {w: s for w, s in solved.items() if s.row.get("applied", True)}
                model = write(prep, solved, {w: level_options(options, lv) for w in solved})
            else:
                model, solved, _ = remove_channels(prep, lv.channels, options)
            check(model)
            errors = relative_errors(reference, outputs(model, prep.held, options.batch_size, options.custom_ops))
            path = out_dir / f"{lv.name}.onnx"
            save_atomic(model, path)
            paths[lv.name] = path
            points.append({"family": family_of(lv.name), "level": lv.name, "path": str(path),
                           "bytes": path.stat().st_size, "compression_ratio": src.stat().st_size / path.stat().st_size,
                           "relative_output_error": errors, "error": max(errors.values()),
                           "layers_compressed": len(solved)})
        progress("write", len(parsed) + len(cut), len(parsed) + len(cut), "")
    runtime = options.target
    reason = runtime.available()
    seconds = {}
    if reason is None:
        progress("timing", 0, 1, f"{len(paths) + 1} models in turns on {options.runtime}")
        seconds = runtime.latencies({"dense": src, **paths}, timing_feed(prep, options), custom_ops=options.custom_ops)
        progress("timing", 1, 1, "")
    for p in points:
        if seconds:
            p["seconds"] = seconds[p["level"]]
            p["speedup"] = seconds["dense"] / seconds[p["level"]]
    report = {"input": str(src), "bytes": src.stat().st_size, "runtime": options.runtime,
              "latency": "not measured: " + reason if reason else f"median seconds per batch of {options.batch_size}",
              "dense_seconds": seconds.get("dense"), "points": points,
              "seconds_total": time.perf_counter() - t0}
    with atomic_path(out_dir / "tradeoff.json") as tmp:
        pathlib.Path(tmp).write_text(json.dumps(report, indent=2))
    if plot:
        draw(report, out_dir / "tradeoff.png")
        report["plot"] = str(out_dir / "tradeoff.png")
    return report


def draw(report: dict, path) -> None:
    """Output error against compression ratio and against measured latency, a line per family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = report["dense_seconds"] is not None
    fig, axes = plt.subplots(1, 2 if timed else 1, figsize=(12 if timed else 6.5, 4.5), squeeze=False)
    families = list(dict.fromkeys(p["family"] for p in report["points"]))
    for family in families:
        pts = [p for p in report["points"] if p["family"] == family]
        pts_r = sorted(pts, key=lambda p: p["compression_ratio"])
        line = axes[0][0].plot([p["compression_ratio"] for p in pts_r], [p["error"] for p in pts_r], "o-",
                               label=family)[0]
        for p in pts_r:
            axes[0][0].annotate(p["level"], (p["compression_ratio"], p["error"]), fontsize=7,
                                xytext=(3, 3), textcoords="offset points")
        if timed:  # in the order the levels were given, mildest first
            axes[0][1].plot([p["seconds"] * 1e3 for p in pts], [p["error"] for p in pts], "o-",
                            color=line.get_color(), label=family)
    name = pathlib.Path(report["input"]).name
    axes[0][0].set(xscale="log", yscale="log", xlabel="compression ratio (input bytes / output bytes on disk)",
                   ylabel="relative output error", title=f"{name}: error vs size")
    if timed:
        axes[0][1].axvline(report["dense_seconds"] * 1e3, color="grey", ls="--", label="dense")
        axes[0][1].set(yscale="log", xlabel=f"{report['runtime']} ms per batch (measured)",
                       ylabel="relative output error", title=f"{name}: error vs latency")
    for ax in axes[0]:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
