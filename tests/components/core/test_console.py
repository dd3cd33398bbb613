"""The console wrapper: tqdm bars become separate lines in a log (never one long carriage-return line),
redraw in place in a terminal, and chatter lines can be dropped."""
from __future__ import annotations

import io
import math

from tqdm import tqdm

from components.core.console import ConsoleStream


def _bar(stream, total: int = 100, **kwargs) -> None:
    with tqdm(total=total, desc="eval no_context", unit="question", file=stream, mininterval=0, miniters=1,
              **kwargs) as bar:
        for _ in range(total):
            bar.update(1)


def test_in_a_log_a_bar_is_lines_not_carriage_returns():
    out = io.StringIO()
    _bar(ConsoleStream(out, bars_as_lines=True, interval=0))
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 101  # 0/100 .. 100/100, one line each (the redraw on close repeats 100/100: dropped)
    assert lines[0].startswith("eval no_context:   0%") and "0/100" in lines[0]
    assert "100/100" in lines[-1] and "question/s" in lines[-1]
    assert all(line.strip() for line in lines)


def test_lines_are_periodic_and_the_bar_ends_on_its_final_state():
    out = io.StringIO()
    stream = ConsoleStream(out, bars_as_lines=True, interval=math.inf)  # the interval never passes here
    _bar(stream)
    _bar(stream, total=7)
    lines = out.getvalue().splitlines()
    # each bar: its first state (shown at once) and its last; everything between waited for the interval
    assert [line.split("|")[-1].split()[0] for line in lines] == ["0/100", "100/100", "0/7", "7/7"]


def test_messages_written_during_a_bar_stay_whole():
    out = io.StringIO()
    stream = ConsoleStream(out, bars_as_lines=True, interval=0)
    with tqdm(total=3, desc="finetune", unit="step", file=stream, mininterval=0) as bar:
        bar.update(1)
        bar.write("step 1/3  loss 4.731  lr 2.00e-04", file=stream)
        bar.update(2)
    lines = out.getvalue().splitlines()
    assert "step 1/3  loss 4.731  lr 2.00e-04" in lines
    assert "\r" not in out.getvalue() and "3/3" in lines[-1]


def test_in_a_terminal_the_bar_redraws_in_place():
    out = io.StringIO()
    _bar(ConsoleStream(out, bars_as_lines=False), total=5)
    assert out.getvalue().count("\r") >= 5 and out.getvalue().count("\n") <= 1


def test_chatter_lines_are_dropped_and_the_rest_kept():
    out = io.StringIO()
    stream = ConsoleStream(out, drop=("ClearML Task: created new task id=offline-",))
    print("ClearML Task: created new task id=offline-123", file=stream)  # print: the text, then "\n"
    stream.write("ClearML Task: created new task id=offline-456\n")
    print("ClearML results page: http://host/x", file=stream)
    print("[eval] running eval", file=stream)
    assert out.getvalue() == "ClearML results page: http://host/x\n[eval] running eval\n"


def test_it_is_still_the_stream_it_wraps():
    out = io.StringIO()
    stream = ConsoleStream(out)
    assert not stream.isatty() and stream.getvalue() == ""  # other attributes are the wrapped stream's
    try:
        stream.write = print  # what ClearML tries on sys.stdout; the wrapper must stay in the chain
    except AttributeError:
        pass
    stream.write("kept\n")
    assert out.getvalue() == "kept\n"
