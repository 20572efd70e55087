"""What onnxobc will not do with untrusted input: unpickle, load a custom-op library nobody named,
or reach the network (only a Ray cluster the user names with --ray)."""

import ast
import pathlib
import socket
import subprocess
import sys

import numpy as np
from corpus import calib, net
from test_layering import imported

from onnxobc.cli import main

PACKAGE = pathlib.Path(__file__).parents[1] / "onnxobc"


def test_the_package_never_unpickles_nor_imports_network_modules():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = imported(node)
            network = path.name == "cluster.py" and names == ["socket"]  # only to the address --ray names
            offenders += [f"{path.name}: import {n}" for n in names if n.split(".")[0] in
                          ("pickle", "cloudpickle", "dill", "shelve", "marshal", "urllib", "requests", "http",
                           "socket", "ftplib") and not network]
            if isinstance(node, ast.keyword) and node.arg == "allow_pickle" and not (
                    isinstance(node.value, ast.Constant) and node.value.value is False):
                offenders.append(f"{path.name}: allow_pickle={ast.unparse(node.value)}")
    assert not offenders, offenders


def test_compress_opens_no_socket(tmp_path, monkeypatch, capsys):
    import onnx

    def refuse(*args, **kwargs):
        raise AssertionError("a socket was opened")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    onnx.save(net(), tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", **calib())
    assert main(["compress", str(tmp_path / "m.onnx"), str(tmp_path / "o.onnx"), "--calib", str(tmp_path / "c.npz"),
                 "--wbits", "8"]) == 0, capsys.readouterr().err


def test_no_custom_op_library_is_loaded_unless_named(tmp_path):
    """onnxruntime-extensions is installed for the tests, yet a compress that names no library
    maps none into the process (and one that names it does)."""
    import onnx

    onnx.save(net(), tmp_path / "m.onnx")
    np.savez(tmp_path / "c.npz", **calib())
    script = ("import sys; from onnxobc.cli import main; code = main(sys.argv[1:]); "
              "print(code, any('onnxruntime_extensions' in line for line in open('/proc/self/maps')))")
    base = [str(tmp_path / "m.onnx"), str(tmp_path / "o.onnx"), "--calib", str(tmp_path / "c.npz"), "--wbits", "8"]
    plain = subprocess.run([sys.executable, "-c", script, "compress", *base], capture_output=True, text=True)
    assert plain.stdout.split()[-2:] == ["0", "False"], plain.stderr
    named = subprocess.run([sys.executable, "-c", script, "compress", *base, "--custom-ops", "extensions"],
                           capture_output=True, text=True)
    assert named.stdout.split()[-2:] == ["0", "True"], named.stderr
