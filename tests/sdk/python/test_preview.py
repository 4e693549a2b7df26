"""Preview links through the real Python SDK in local SDK mode: an HTTP server started inside
the sandbox is opened through `get_preview_link(port)` with the token header the SDK returns."""

import socket
import time
import uuid

import httpx

from daytona import SessionExecuteRequest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_preview_link_opens_an_app_running_in_the_sandbox(sandbox, wd):
    (wd / "hello.txt").write_text("hello from the sandbox app\n")
    port = _free_port()
    sid = f"preview-{uuid.uuid4().hex[:8]}"
    sandbox.process.create_session(sid)
    try:
        sandbox.process.execute_session_command(
            sid,
            SessionExecuteRequest(
                command=f"cd {wd.abs} && exec python3 -m http.server {port} --bind 127.0.0.1",
                run_async=True,
            ),
        )
        link = sandbox.get_preview_link(port)
        assert link.url.endswith(f"/proxy/{port}")
        headers = {"X-Daytona-Preview-Token": link.token}
        deadline = time.monotonic() + 30
        while True:
            r = httpx.get(f"{link.url}/hello.txt", headers=headers)
            # 502 while the server is still starting (nothing listens yet).
            if r.status_code != 502 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert r.status_code == 200, r.text
        assert r.text == "hello from the sandbox app\n"
        # A directory listing: the app sees the path it was asked for, percent-encoding kept.
        (wd / "a b").mkdir()
        listing = httpx.get(f"{link.url}/a%20b/", headers=headers)
        assert listing.status_code == 200
        assert "Directory listing for /a b/" in listing.text
        missing = httpx.get(f"{link.url}/nope.txt", headers=headers)
        assert missing.status_code == 404
    finally:
        sandbox.process.delete_session(sid)


def test_preview_link_of_a_closed_port_is_a_502(sandbox):
    link = sandbox.get_preview_link(_free_port())
    r = httpx.get(link.url, headers={"X-Daytona-Preview-Token": link.token})
    assert r.status_code == 502
    body = r.json()
    assert body["code"] == "BAD_GATEWAY" and body["source"] == "DAYTONA_DAEMON"
