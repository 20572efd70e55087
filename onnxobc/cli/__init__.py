"""The `onnxobc` command: argument parsing (parser.py) and the subcommands (commands.py; the
build-pipeline stages in stages.py; printing in show.py) around the library. Errors are one line
on stderr and exit status 2 (3 for a bug); the library's option errors are worded here with the
flags."""

from __future__ import annotations

import os
import pathlib
import sys
import traceback

from ..errors import OptionError
from .parser import flag_names, make_parser, read_args


def main(argv=None) -> int:
    ap = make_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = read_args(ap, argv)
        return args.run(args)
    except OptionError as e:
        print(f"onnxobc: error: {e.worded(flag_names(ap))}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"onnxobc: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a file that cannot be written or read
        where = f": {e.filename}" if e.filename else ""
        print(f"onnxobc: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("onnxobc: interrupted (finished layers stay in the database; rerun to resume)", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: one line to report, the traceback with ONNXOBC_TRACEBACK=1
        if os.environ.get("ONNXOBC_TRACEBACK"):
            raise
        where = traceback.extract_tb(e.__traceback__)[-1]
        print(f"onnxobc: internal error, please report it with the input: {type(e).__name__}: {e} "
              f"(at {pathlib.Path(where.filename).name}:{where.lineno}; ONNXOBC_TRACEBACK=1 shows the traceback)",
              file=sys.stderr)
        return 3
