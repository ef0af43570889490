"""Progress a log can show, and thread pools that stop when asked (src/core/progress.py)."""
import _thread
import signal
import threading
import time

import pytest

from src.core.progress import LineProgress, parallel_map, progress


def test_off_a_terminal_a_long_loop_says_where_it_is_while_it_runs(capsys, monkeypatch):
    monkeypatch.setattr(LineProgress, "every", 0.0)  # a line after every item instead of every 30 s
    bar = progress(iter(range(4)), desc="finding faces", unit="img", total=4)
    assert list(bar) == [0, 1, 2, 3]
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err and len(lines) == 5  # four while it runs, one at the end
    assert lines[1].startswith("finding faces: 2/4 img in ") and "img/s" in lines[1] and "s left" in lines[1]
    assert lines[-1].startswith("finding faces: 4 img in ")


def test_a_short_loop_says_one_line(capsys):
    assert len(list(LineProgress(range(100), desc="checks", unit="img"))) == 100
    assert len(capsys.readouterr().err.splitlines()) == 1  # every 30 s: a fast loop only at its end


@pytest.fixture
def ctrl_c_handled():
    """Python's own Ctrl-C handler, also where the suite was started in the background (SIGINT ignored
    there, and interrupt_main then does nothing)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_stops_a_thread_pool_without_waiting_for_its_queue(ctrl_c_handled):
    done = []

    def slow(i):
        time.sleep(0.05)
        done.append(i)

    threading.Timer(0.2, _thread.interrupt_main).start()
    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        parallel_map(slow, range(400), 2, "checking")
    assert time.perf_counter() - started < 2 and len(done) < 100  # the whole queue would take 10 s
