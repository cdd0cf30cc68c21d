"""The events page's live stream (Server-Sent Events) against a real server process, on both
backends: a stream left open does not hold up the server's shutdown, and it ends cleanly."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.harness import RunningServer


def test_stopping_the_server_ends_an_open_live_stream_cleanly(
    server_db_url: str, tmp_path: Path
) -> None:
    # Given a server with the events page's live stream open, which has shown one event
    server = RunningServer(tmp_path, db_url=server_db_url).start()
    assert server.process is not None
    try:
        with httpx.stream("GET", f"{server.url}/events/live", timeout=10) as stream:
            assert stream.status_code == 200
            sent = httpx.post(f"{server.url}/e/dev", json={"name": "live/shown", "data": {}})
            assert sent.status_code == 200
            lines = stream.iter_lines()
            assert next(lines) == "event: event"
            assert "live/shown" in next(lines)

            # When the server is stopped (SIGTERM, as from systemd or Ctrl-C on `headwater dev`)
            stopping = time.monotonic()
            server.process.terminate()

            # Then the stream ends as a complete response (a cut one raises RemoteProtocolError)
            rest = list(lines)
        server.process.wait(10)
        took = time.monotonic() - stopping
    finally:
        server.stop()
    assert rest == [""]
    # And the server exits promptly, saying nothing of the stream it ended
    assert took < 5, f"the server took {took:.1f} s to stop"
    log = server.log()
    for word in ("WARNING", "ERROR", "Traceback"):
        assert word not in log, log
