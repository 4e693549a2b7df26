"""Token auth (`--token`): with a token set, the SDK works when its api_key is the token (control
plane, toolbox calls, signed URLs, preview links, SSH password) and is refused with any other."""

import asyncio

import asyncssh
import httpx
import pytest

from conftest import start_daemon, stop_daemon

TOKEN = "sdk-token-7f3a"


@pytest.fixture(scope="module")
def token_daemon():
    daemon = start_daemon("auth", args=["--token", TOKEN])
    yield daemon
    stop_daemon(daemon)


def test_the_sdk_works_with_the_token_as_its_api_key(token_daemon):
    from daytona import Daytona, DaytonaConfig

    daytona = Daytona(DaytonaConfig(api_url=token_daemon.api_url, api_key=TOKEN))
    sandbox = daytona.create()
    sandbox.fs.upload_file(b"hello token", "auth.txt")
    assert sandbox.fs.download_file("auth.txt") == b"hello token"
    assert sandbox.process.exec("echo $((6*7))").result.strip() == "42"
    # A signed URL needs no key at all.
    assert httpx.get(sandbox.download_url("auth.txt")).content == b"hello token"
    # The toolbox listener itself: the token opens it, nothing else does.
    r = httpx.get(f"{token_daemon.toolbox_url}/work-dir")
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"
    r = httpx.get(f"{token_daemon.toolbox_url}/work-dir", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200
    assert httpx.get(f"{token_daemon.toolbox_url}/healthz").status_code == 200


def test_another_api_key_is_refused(token_daemon):
    from daytona import Daytona, DaytonaConfig
    from daytona.common.errors import DaytonaAuthenticationError

    daytona = Daytona(DaytonaConfig(api_url=token_daemon.api_url, api_key="not-the-token"))
    with pytest.raises(DaytonaAuthenticationError):
        daytona.get("local")


def test_ssh_takes_the_token_as_a_password(token_daemon):
    async def main():
        options = dict(known_hosts=None, username="sandbox", agent_path=None, client_keys=None)
        async with asyncssh.connect(
            "127.0.0.1", port=token_daemon.ssh_port, password=TOKEN, **options
        ) as conn:
            result = await conn.run("echo in")
            assert result.stdout == "in\n"
        with pytest.raises(asyncssh.PermissionDenied):
            await asyncssh.connect(
                "127.0.0.1", port=token_daemon.ssh_port, password="wrong", **options
            )

    asyncio.run(asyncio.wait_for(main(), 120))


def test_mcp_needs_the_token_and_preview_links_do_not_carry_it(token_daemon):
    """`/mcp` with the token works (and without it is a 401); `preview_link` says how to pass the
    token instead of putting it in the URL, and the URL opens the app with it, not without."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    class App(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"app here"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    app = ThreadingHTTPServer(("127.0.0.1", 0), App)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    port = app.server_address[1]
    url = f"{token_daemon.toolbox_url}/mcp"
    refused = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert refused.status_code == 401 and refused.json()["code"] == "UNAUTHORIZED"

    async def main():
        client = create_mcp_http_client(headers={"Authorization": f"Bearer {TOKEN}"})
        async with client, streamable_http_client(url, http_client=client) as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                return (await s.call_tool("preview_link", {"port": port})).structured_content

    try:
        link = asyncio.run(main())
        assert TOKEN not in link["url"], link
        assert link["listening"] is True
        assert "Authorization: Bearer <token>" in link["auth"], link
        assert httpx.get(link["url"]).status_code == 401
        opened = httpx.get(link["url"], headers={"Authorization": f"Bearer {TOKEN}"})
        assert opened.status_code == 200 and opened.text == "app here"
    finally:
        app.shutdown()
