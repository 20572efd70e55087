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


def test_each_pass_of_a_stage_gets_its_milestones_in_a_log():
    """A stage that counts its parts one pass after another (reach: the layers, then the narrowed
    layers at each share, then the whole models) shows each pass, not only the first."""
    log = io.StringIO()
    p = ProgressPrinter(log)
    for total in (8, 8, 20):
        for i in range(1, total + 1):
            p("reach", i, total, f"part {i}")
    lines = log.getvalue().splitlines()
    assert [line.split()[2] for line in lines] == ["1/8", "2/8", "4/8", "6/8", "8/8"] * 2 + \
        ["1/20", "5/20", "10/20", "15/20", "20/20"]
