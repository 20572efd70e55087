import io

from onnxobc.progress import ProgressPrinter


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_log_gets_milestones_terminal_gets_one_redrawn_line():
    log = io.StringIO()
    p = ProgressPrinter(log)
    for i in range(101):
        p("solve", i, 100, f"layer{i}")
    lines = log.getvalue().splitlines()
    assert len(lines) == 5 and lines[-1].startswith("solve") and "100/100" in lines[-1]
    tty = Tty()
    p = ProgressPrinter(tty)
    for i in range(11):
        p("capture", i, 10)
    out = tty.getvalue()
    assert out.count("\r") == 11 and out.count("\n") == 1 and "10/10" in out
