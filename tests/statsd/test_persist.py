"""persistGauges: gauges survive a restart; the file is always whole."""

from __future__ import annotations

import json
import signal

from tests.conftest import wait_until


def test_gauges_survive_a_restart(start_daemon, tmp_path) -> None:
    state = tmp_path / "gauges.json"
    d = start_daemon(persistGauges=str(state), flushInterval=3_600_000)
    d.send(b"disk.free:42|g\nqueue:+3|g")
    wait_until(lambda: d.total() == 1, what="the packet")
    d.signal(signal.SIGTERM)
    assert d.proc.wait(60) == 0
    assert json.loads(state.read_text()) == {"disk.free": 42, "queue": 3}
    again = start_daemon(persistGauges=str(state))
    assert "'disk.free': 42" in again.console("gauges")
    again.send(b"queue:+1|g")
    wait_until(lambda: "queue: 4" in again.console("gauges"), what="a delta applied to the restored gauge")


def test_gauges_are_saved_at_every_flush(start_daemon, tmp_path) -> None:
    state = tmp_path / "gauges.json"
    d = start_daemon(persistGauges=str(state), flushInterval=200)
    d.send(b"saved:7|g")
    wait_until(
        lambda: state.exists() and json.loads(state.read_text()).get("saved") == 7, what="the saved gauge"
    )
    assert not (tmp_path / "gauges.json.tmp").exists()


def test_a_corrupt_file_is_reported_not_fatal(start_daemon, tmp_path) -> None:
    state = tmp_path / "gauges.json"
    state.write_text("{half a fi")
    d = start_daemon(persistGauges=str(state))
    assert "cannot read" in d.logs()
    assert d.proc.poll() is None
