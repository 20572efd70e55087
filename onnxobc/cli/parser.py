"""The command line: subcommands and their options. The compression families' flags come from
their registry (families.FLAGS); --config FILE (TOML, keys as the long options with _ for -)
supplies defaults the command line overrides."""

from __future__ import annotations

import argparse

from .. import families
from ..errors import OptionError
from . import commands, stages


def _typed(flag):
    """The flag's type for argparse: a bad value's error says it in the flag's words."""
    def convert(text):
        try:
            return flag.type(text)
        except OptionError as e:
            raise argparse.ArgumentTypeError(e.worded({flag.field: flag.flag})) from None
    convert.__name__ = flag.field
    return convert


def _smooth(text: str):
    """--smooth: auto, off or a number (its range is checked with the other options)."""
    if text in ("auto", "off"):
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes auto, off or a migration strength α in (0, 1], got {text!r}") from None


def _add_solver_options(c) -> None:
    c.add_argument("--calib", help="an .npz file keyed by input name (samples first), a folder of them, or "
                                   "'random' (required, here or in --config)")
    c.add_argument("--method", help="exact (default), gptq, sparsegpt, magnitude or rtn; naming one (exact "
                                    "included) solves every layer with it, whatever the time")
    c.add_argument("--max-time", metavar="DURATION",
                   help="time the exact solves may take, e.g. 10m, 90s, 1h, or none: layers it cannot afford (by "
                        "a prediction made before solving) get GPTQ/SparseGPT instead (compress; default 10m "
                        "unless --method is given)")
    c.add_argument("--workers", type=int, default=0, metavar="N",
                   help="processes that solve layers here, BLAS on one thread each (default 0: one per core where "
                        "the predicted solves take 20 s or more; 1: this process alone)")
    c.add_argument("--damp", type=float, default=0.01, help="relative Hessian dampening (default 0.01)")
    c.add_argument("--skip", nargs="*", metavar="NAME", help="weights or nodes to leave dense")
    c.add_argument("--batch-size", type=int, default=8,
                   help="calibration samples per onnxruntime run, and the batch latencies are measured at")
    c.add_argument("--act-ranges", default="auto", choices=["auto", "output", "histogram"],
                   help="with --abits 8, how a layer input's int8 range is chosen: among min/max, percentiles and "
                        "the histogram's best, the one that puts the least error on the outputs of the layers it "
                        "feeds (output), the histogram's best (histogram), or auto (default): compress writes "
                        "both and keeps the one of lower held-out output error (budgets take histogram)")
    c.add_argument("--smooth", default="auto", type=_smooth, metavar="auto|off|ALPHA",
                   help="with --abits, move activation outliers into the MatMul/Gemm weights (SmoothQuant: x/s "
                        "and diag(s)·W, s = max|x|^α / max|w|^(1−α)): auto (default) picks α per tensor, or none, "
                        "by the error of the layers it feeds, as they will be quantized; off; or a fixed α in (0, 1]")
    c.add_argument("--slow-int8", default="float", choices=["float", "keep"],
                   help="with --abits, a layer whose int8 form runs slower than float on the --runtime (each "
                        "timed alone) stays float (default; kept only if the whole model then measures faster), "
                        "or keep int8 everywhere")
    c.add_argument("--asym", action="store_true", help="asymmetric weight grid (default: symmetric, zero point 0)")
    c.add_argument("--runtime", default="onnxruntime",
                   help="the runtime the output is for: onnxruntime (default; uint8 activations, fused U8S8 "
                        "kernels), tensorrt (symmetric int8, zero points 0) or deepsparse (int8 in operator form)")
    c.add_argument("--no-bias-correction", action="store_true",
                   help="do not fold each compressed layer's output mean shift into its bias")
    c.add_argument("--no-variance-correction", action="store_true",
                   help="do not rescale the channels a BatchNormalization reads to the dense output variance")
    c.add_argument("--custom-ops", action="append", metavar="LIB",
                   help="custom-op library the model needs in onnxruntime: 'extensions' (onnxruntime-extensions) "
                        "or a library file; only libraries named here are loaded (repeatable)")
    c.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where Hessians are summed and the exact solvers run: cuda (a GPU through CuPy), cpu, or "
                        "auto (default): the GPU when CuPy has one")
    c.add_argument("--max-memory", type=float, metavar="GIB",
                   help="memory a layer's Hessians and solve may take; larger layers are left dense with the reason "
                        "(default: the memory available); a --speedup times half of it in whole models at once")
    c.add_argument("--levels", nargs="*", metavar="LEVEL",
                   help="the levels a budget chooses from (default: the set for the budget and runtime), "
                        "e.g. dense w8a8 w4 2:4 s0.500 b4-0.800+w8a8; for --speedup also channel shares, c0.250")
    # the fixed-level choices, for the subcommands that do not take them (compress overrides them)
    c.set_defaults(matmulnbits=False, **dict.fromkeys(families.FIELDS))


def _add_families(c) -> None:
    for flag in families.FLAGS:
        c.add_argument(flag.flag, dest=flag.field, type=_typed(flag), metavar=flag.metavar, help=flag.help)
    c.add_argument("--matmulnbits", action="store_true",
                   help="write quantized MatMul weights as onnxruntime's MatMulNBits (com.microsoft) kernels")


def _add_budgets(c) -> None:
    c.add_argument("--speedup", metavar="FACTOR", help="a budget: measured speedup on --runtime, e.g. 2x")
    c.add_argument("--size", metavar="SHARE", help="a budget: output bytes as a share of the input's, e.g. 0.25")
    c.add_argument("--flops", metavar="FACTOR", help="a budget: the layers' FLOPs reduced, e.g. 3x")
    c.add_argument("--bops", metavar="FACTOR", help="a budget: the layers' bit-operations reduced, e.g. 8x")
    c.add_argument("--best-effort", action="store_true",
                   help="when the budget cannot be met, take the plan of least loss within 5%% of the best reachable "
                        "instead of failing")


def _add_ray(c) -> None:
    c.add_argument("--ray", metavar="auto|local|ADDRESS",
                   help="solve the layers as tasks on a Ray cluster: auto (the one `ray start` made, or RAY_ADDRESS), "
                        "local (a new Ray instance here) or its address; needs pip install 'onnxobc[distributed]'")


def _add_config(c) -> None:
    c.add_argument("--config", metavar="FILE", help="TOML file of the same options (the command line overrides it)")


def _stage_parser(subparsers, name: str, help: str, db_help: str, run, model_help: str = "the .onnx file"):
    """A build-pipeline stage's subcommand: the model, --db, the solver options and --config."""
    p = subparsers.add_parser(name, help=help)
    p.add_argument("model", help=model_help)
    p.add_argument("--db", required=True, metavar="DIR", help=db_help)
    _add_solver_options(p)
    _add_config(p)
    p.set_defaults(run=run)
    return p


def make_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="onnxobc", description="Post-training compression of ONNX models "
                                                             "with Optimal Brain Compression.")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="list the compressible layers of a model, their 2-D shapes and FLOPs")
    p.add_argument("model", help="an .onnx file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--input-shape", action="append", metavar="NAME=D0,D1,…",
                   help="fix a graph input's shape for the FLOPs count (repeatable)")
    p.set_defaults(run=commands.inspect)
    c = sub.add_parser("compress", help="compress a model layer by layer from calibration data")
    c.add_argument("model", help="the .onnx file to compress (never modified)")
    c.add_argument("out", help="where to write the compressed model")
    _add_solver_options(c)
    _add_families(c)
    _add_budgets(c)
    c.add_argument("--db", metavar="DIR", help="the database a budget builds and reuses (default: OUT.db)")
    c.add_argument("--sequential", nargs="?", const="on", default="auto", choices=["auto", "on", "off"],
                   help="on (the flag alone): solve the layers wave after wave, each on the inputs the model "
                        "compressed so far gives it, its weight first refitted to them (the OBC paper's sequential "
                        "mode; fixed levels only); off: every layer on the dense model's inputs; auto (default): "
                        "with --abits 8 or --wbits of 4 or fewer and the exact method, both, and the model of lower "
                        "held-out output error kept. Channel cuts (--channels, and those of --speedup) are made "
                        "again wave after wave with on and auto (auto: the better kept, the cut made again given up "
                        "early where it is behind the independent one at a quarter and at half of the groups), "
                        "not with off")
    _add_ray(c)
    c.add_argument("--report", help="also write the summary as JSON here")
    _add_config(c)
    c.set_defaults(run=commands.compress)
    t = sub.add_parser("tradeoff", help="error against bytes on disk and measured latency, per compression family")
    t.add_argument("model", help="the .onnx file (never modified)")
    t.add_argument("--out", required=True, metavar="DIR",
                   help="folder for one model per level, tradeoff.json, tradeoff.png and the database")
    _add_solver_options(t)
    t.add_argument("--no-plot", action="store_true", help="write tradeoff.json only (no matplotlib needed)")
    t.set_defaults(run=commands.tradeoff)
    d = sub.add_parser("db", help="the database of compressed layers")
    dsub = d.add_subparsers(dest="db_command", required=True)
    b = _stage_parser(dsub, "build", "solve every layer at every level of a budget's set, resuming what is stored",
                      "the database folder (made if missing)", stages.db_build)
    b.add_argument("--cost", default="latency", choices=["latency", "size", "flops", "bops"],
                   help="the budget whose level set to build (default latency)")
    _add_ray(b)
    pr = _stage_parser(sub, "profile", "time every layer of the database at each level on the runtime, and the "
                                       "whole model (cached in the database)",
                       "a database made by onnxobc db build", stages.profile)
    pl = _stage_parser(sub, "plan", "choose one level per layer under a budget from the database (no solving, "
                                    "no timing) and write the plan as JSON",
                       "a database made by onnxobc db build (and profile)", stages.plan)
    pl.add_argument("--out", required=True, metavar="PLAN.json", help="where to write the plan")
    _add_budgets(pl)
    st = _stage_parser(sub, "stitch", "write the model a plan chooses from the database, correct, verify, and "
                                      "time it for a speedup plan",
                       "the database the plan was made from", stages.stitch,
                       model_help="the .onnx file the plan was made for (never modified)")
    st.add_argument("out", help="where to write the compressed model")
    st.add_argument("--plan", required=True, metavar="PLAN.json", help="a plan written by onnxobc plan")
    st.add_argument("--report", help="also write the summary as JSON here")
    ls = dsub.add_parser("ls", help="list the database's entries")
    ls.add_argument("--db", required=True, metavar="DIR")
    ls.set_defaults(run=stages.db_ls)
    ap.subcommands = [p, c, t, d, b, pr, pl, st, ls]
    return ap


def _subparsers(ap) -> list:
    """Every (sub)parser under `ap`, itself included (make_parser lists them)."""
    return [ap] + getattr(ap, "subcommands", [])


def flag_names(ap) -> dict:
    """dest → its long flag, over every subcommand: how the command line names the library's fields."""
    return {a.dest: a.option_strings[-1] for p in _subparsers(ap) for a in p._actions if a.option_strings}


def _config_defaults(argv) -> dict:
    """Options from --config FILE (TOML, keys as the long options with _ for -)."""
    import tomllib

    if "--config" not in argv:
        return {}
    i = argv.index("--config")
    if i + 1 >= len(argv):
        raise ValueError("--config needs a file")
    try:
        with open(argv[i + 1], "rb") as f:
            values = {k.replace("-", "_"): v for k, v in tomllib.load(f).items()}
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"--config {argv[i + 1]}: {e}") from None
    for flag in families.FLAGS:  # argparse converts only what it parses: the file's values here
        if values.get(flag.field) is not None:
            values[flag.field] = flag.type(str(values[flag.field]) if flag.type is not float else values[flag.field])
    return values


def read_args(ap, argv: list) -> argparse.Namespace:
    """The parsed command line, over the defaults of --config."""
    defaults = _config_defaults(argv)
    if defaults:
        configurable = [p for p in _subparsers(ap) if any(a.dest == "config" for a in p._actions)]
        known = {a.dest for p in configurable for a in p._actions}
        unknown = sorted(set(defaults) - known)
        if unknown:
            raise ValueError(f"--config: unknown options {unknown}")
        for p in configurable:
            p.set_defaults(**{k: v for k, v in defaults.items() if k in {a.dest for a in p._actions}})
    return ap.parse_args(argv)
