"""Database build here (BLAS on every core, and on one thread) against the same build as Ray
tasks on a cluster of 1 and of 2 workers (`ray start --head --num-cpus N` on this machine,
`onnxobc db build --ray ADDRESS`): wall time of the command (cluster start not counted,
connecting counted), ratio to the local build, whether the database is byte-identical to the
one-thread local build (each task's BLAS runs one thread), and against the all-cores local
build (OpenBLAS rounds differently with other thread counts, which flips near-tied greedy
choices): the share of weights that differ (by more than 1e-5 of the layer's largest) and the
largest relative difference of an entry's calibration loss. The model: an MLP of WIDTH×WIDTH MatMuls made here,
calibrated on random inputs; configurations run in turns, ROUNDS times, best kept.

    python bench/cluster.py [--width 512] [--layers 4] [--rounds 2] [--levels dense s0.500 …]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(pathlib.Path(__file__).parent))
sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "tests"))
from evidence import record  # noqa: E402
from tables import print_table  # noqa: E402
from test_budget import snapshot  # noqa: E402

from onnxobc.db.store import Database  # noqa: E402

RAY = os.path.join(os.path.dirname(sys.executable), "ray")


def make_mlp(folder: pathlib.Path, width: int, layers: int, samples: int = 256) -> tuple:
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    for i in range(layers):
        inits.append(numpy_helper.from_array((rng.standard_normal((width, width)) / np.sqrt(width))
                                             .astype(np.float32), f"w{i}"))
        nodes += [helper.make_node("MatMul", [x, f"w{i}"], [f"m{i}"], name=f"mm{i}"),
                  helper.make_node("Relu", [f"m{i}"], [f"r{i}"], name=f"relu{i}")]
        x = f"r{i}"
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", width])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["n", width])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, folder / "mlp.onnx")
    np.savez(folder / "calib.npz", x=rng.standard_normal((samples, width)).astype(np.float32))
    return folder / "mlp.onnx", folder / "calib.npz"


@contextlib.contextmanager
def cluster(cpus: int):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([RAY, "start", "--head", f"--port={port}", f"--num-cpus={cpus}", "--include-dashboard=false",
                    "--disable-usage-stats"], check=True, capture_output=True)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True)


def build(model, calib, db, levels, *extra, env=None) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "onnxobc", "db", "build", str(model), "--calib", str(calib), "--db", str(db),
                    "--levels", *levels, *extra], check=True, capture_output=True,
                   env=None if env is None else dict(os.environ, **env))
    return time.perf_counter() - t


def entries(db) -> dict:
    with Database(db) as d:
        return {(e["layer"], e["level"]): (d.get(e["model"], e["settings"], e["layer"], e["level"])[0]["weight"],
                                           e["calib_loss"]) for e in d.entries()}


def differences(db, reference) -> tuple:
    """(share of weights differing, largest relative calibration-loss difference) over the entries."""
    a, b = entries(db), entries(reference)
    changed = sum(int(np.sum(np.abs(a[k][0] - b[k][0]) > 1e-5 * np.abs(b[k][0]).max())) for k in b)
    total = sum(b[k][0].size for k in b)
    loss = max(abs(a[k][1] - b[k][1]) / b[k][1] if b[k][1] else 0.0 for k in b)
    return changed / total, loss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--levels", nargs="*", default=["dense", "s0.500", "s0.750", "2:4", "w8", "w4", "2:4+w4"])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        d = pathlib.Path(d)
        model, calib = make_mlp(d, args.width, args.layers)
        names = ["local", "local, 1 BLAS thread", "ray, 1 worker", "ray, 2 workers"]
        times = {k: [] for k in names}
        for r in range(args.rounds):
            times["local"].append(build(model, calib, d / f"0-{r}", args.levels))
            times["local, 1 BLAS thread"].append(build(model, calib, d / f"1-{r}", args.levels,
                                                       env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}))
            for i, cpus in ((2, 1), (3, 2)):
                with cluster(cpus) as address:
                    times[names[i]].append(build(model, calib, d / f"{i}-{r}", args.levels, "--ray", address))
        one_thread = snapshot(d / "1-0")
        rows = []
        for i, name in enumerate(names):
            same = all(snapshot(d / f"{i}-{r}") == one_thread for r in range(args.rounds))
            best = min(times[name])
            changed, loss = differences(d / f"{i}-0", d / "0-0")
            rows.append([name, f"{best:.1f}", f"{min(times['local']) / best:.2f}x", "yes" if same else "no",
                         f"{changed:.2%}", f"{loss:.1e}"])
    print(f"{args.layers} MatMul layers {args.width}×{args.width}, {len(args.levels)} levels "
          f"({len(one_thread)} entries), best of {args.rounds}")
    print_table(["build", "seconds", "vs local", "identical to local, 1 BLAS thread",
                 "weights differing from local", "largest calib-loss difference from local"], rows)


if __name__ == "__main__":
    main()
    record()
