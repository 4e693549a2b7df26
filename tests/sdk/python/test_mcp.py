"""The MCP server (`/mcp` and `toolboxd mcp`) driven by the official Python MCP SDK (`mcp`).

Over Streamable HTTP with `ClientSession` (the initialize handshake, 2025-11-25: sessions, SSE)
and with `Client` (which negotiates 2026-07-28 with toolboxd), and over stdio with the debug
binary started as `toolboxd mcp --workdir DIR`, as an agent's config starts it. Every tool is
called; schemas are checked as JSON Schema; a chart comes back as a PNG; a `sleep 100` is
cancelled and its process tree is gone; a clone reports progress; a failing tool is `isError`.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import time
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import jsonschema
import pytest
from mcp import Client, ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from conftest import toolboxd_bin

TOOLS = {
    "download_file", "upload_file", "create_folder", "get_file_info", "list_files", "move_file",
    "delete_file", "preview_link", "git_clone", "execute_command", "search_files",
    "replace_in_files", "run_code", "git_status", "git_commit", "session_start",
    "session_exec", "session_logs",
}

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def mcp_url(toolboxd) -> str:
    return toolboxd.toolbox_url + "/mcp"


@asynccontextmanager
async def session(url: str, **kwargs):
    """A `ClientSession` over the streamable HTTP client, after the initialize handshake."""
    async with streamable_http_client(url) as (read, write):
        async with ClientSession(read, write, **kwargs) as s:
            await s.initialize()
            yield s


def text_of(result) -> str:
    return "".join(block.text for block in result.content if block.type == "text")


def gone(pid: int) -> bool:
    """True once `pid` has exited (and was reaped, or is a zombie about to be)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


async def wait_until(predicate, what: str, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting ({seconds} s) for: {what}")
        await anyio.sleep(0.05)


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"})


def make_repo(root: Path, files: int = 30) -> Path:
    repo = root / "origin-repo"
    repo.mkdir()
    git("init", "-q", "-b", "main", cwd=repo)
    for i in range(files):
        (repo / f"file{i:02}.txt").write_text(f"line {i}\n" * 50)
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "first", cwd=repo)
    return repo


# --------------------------------------------------------------------------------------------
# Tool list and schemas
# --------------------------------------------------------------------------------------------


async def test_tools_are_listed_with_valid_schemas_and_annotations(toolboxd):
    async with session(mcp_url(toolboxd)) as s:
        listed = await s.list_tools()
    tools = {tool.name: tool for tool in listed.tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description, tool.name
        schema = tool.input_schema
        jsonschema.validators.validator_for(schema).check_schema(schema)
        assert schema["type"] == "object", tool.name
        if tool.output_schema is not None:
            jsonschema.validators.validator_for(tool.output_schema).check_schema(tool.output_schema)
            assert tool.output_schema["type"] == "object", tool.name
        a = tool.annotations
        assert None not in (a.read_only_hint, a.destructive_hint, a.idempotent_hint, a.open_world_hint), tool.name
    # Honest annotations where it matters most.
    assert tools["download_file"].annotations.read_only_hint
    assert tools["delete_file"].annotations.destructive_hint
    assert tools["execute_command"].annotations.open_world_hint
    assert not tools["list_files"].annotations.destructive_hint
    # Data tools say what their structured content looks like; download_file is content.
    assert sorted(tools["execute_command"].output_schema["required"]) == ["exit_code", "stderr", "stdout", "truncated"]
    assert tools["download_file"].output_schema is None
    # Daytona's MCP parameter names.
    assert set(tools["move_file"].input_schema["properties"]) == {"source_path", "dest_path"}
    assert {"file_path", "content", "encoding", "overwrite"} <= set(tools["upload_file"].input_schema["properties"])
    assert {"url", "path", "branch", "commit_id", "username", "password"} <= set(
        tools["git_clone"].input_schema["properties"])


# --------------------------------------------------------------------------------------------
# Every tool
# --------------------------------------------------------------------------------------------


async def test_file_tools(toolboxd, wd):
    async with session(mcp_url(toolboxd)) as s:
        up = await s.call_tool("upload_file", {"file_path": f"{wd.rel}/a/b/hello.txt", "content": "hello\nworld\n"})
        assert not up.is_error, text_of(up)
        assert up.structured_content == {"path": wd.p("a", "b", "hello.txt"), "bytes": 12}
        assert (wd / "a/b/hello.txt").read_text() == "hello\nworld\n"

        again = await s.call_tool("upload_file", {"file_path": wd.p("a/b/hello.txt"), "content": "x"})
        assert again.is_error and "overwrite" in text_of(again)
        assert (wd / "a/b/hello.txt").read_text() == "hello\nworld\n"
        raw = base64.b64encode(b"\x00\x01binary").decode()
        over = await s.call_tool("upload_file", {"file_path": wd.p("a/b/hello.txt"), "content": raw,
                                                "encoding": "base64", "overwrite": True})
        assert not over.is_error and (wd / "a/b/hello.txt").read_bytes() == b"\x00\x01binary"

        (wd / "doc.txt").write_text("plain text\n")
        down = await s.call_tool("download_file", {"file_path": wd.p("doc.txt")})
        assert text_of(down) == "plain text\n" and not down.is_error
        binary = await s.call_tool("download_file", {"file_path": wd.p("a/b/hello.txt")})
        assert raw in text_of(binary)

        folder = await s.call_tool("create_folder", {"folder_path": wd.p("made/deep"), "mode": "0700"})
        assert folder.structured_content == {"path": wd.p("made/deep")}
        assert (wd / "made/deep").is_dir() and (wd / "made/deep").stat().st_mode & 0o777 == 0o700

        info = await s.call_tool("get_file_info", {"file_path": wd.p("doc.txt")})
        assert info.structured_content["size"] == 11
        assert info.structured_content["is_dir"] is False
        assert info.structured_content["mode"].startswith("-rw")

        listing = await s.call_tool("list_files", {"path": wd.p()})
        names = [e["name"] for e in listing.structured_content["entries"]]
        assert names == ["a", "doc.txt", "made"] and listing.structured_content["truncated"] is False
        deep = await s.call_tool("list_files", {"path": wd.p(), "depth": 3})
        assert wd.p("a", "b", "hello.txt") in [e["path"] for e in deep.structured_content["entries"]]

        moved = await s.call_tool("move_file", {"source_path": wd.p("doc.txt"), "dest_path": wd.p("made/doc.txt")})
        assert moved.structured_content == {"source": wd.p("doc.txt"), "destination": wd.p("made/doc.txt")}
        assert (wd / "made/doc.txt").read_text() == "plain text\n" and not (wd / "doc.txt").exists()

        refused = await s.call_tool("delete_file", {"file_path": wd.p("made")})
        assert refused.is_error and "recursive" in text_of(refused) and (wd / "made").is_dir()
        deleted = await s.call_tool("delete_file", {"file_path": wd.p("made"), "recursive": True})
        assert not deleted.is_error and not (wd / "made").exists()


async def test_image_download_is_image_content_and_big_text_is_capped(toolboxd, wd):
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
    (wd / "dot.png").write_bytes(png)
    (wd / "big.log").write_text("x" * 300_000)
    async with session(mcp_url(toolboxd)) as s:
        image = await s.call_tool("download_file", {"file_path": wd.p("dot.png")})
        assert image.content[0].type == "image" and image.content[0].mime_type == "image/png"
        assert base64.b64decode(image.content[0].data) == png
        big = await s.call_tool("download_file", {"file_path": wd.p("big.log")})
        text = text_of(big)
        assert len(text) < 103_000 and "is 300000 bytes; the first 102400 shown" in text
        cat = await s.call_tool("execute_command", {"command": f"cat {wd.p('big.log')}"})
        assert cat.structured_content["truncated"] is True
        assert len(cat.structured_content["stdout"]) < 103_000
        assert "bytes of stdout omitted here" in cat.structured_content["stdout"]


async def test_search_and_replace_tools(toolboxd, wd):
    (wd / "src").mkdir()
    (wd / "src/a.py").write_text("import os\nprint('Needle')\n")
    (wd / "src/b.rs").write_text("fn main() { let needle = 1; }\n")
    async with session(mcp_url(toolboxd)) as s:
        found = await s.call_tool("search_files", {"path": wd.p(), "pattern": "needle", "case_insensitive": True})
        assert [(m["file"].rsplit("/", 1)[1], m["line"]) for m in found.structured_content["matches"]] == [
            ("a.py", 2), ("b.rs", 1)]
        literal = await s.call_tool("search_files", {"path": wd.p(), "pattern": "print("})
        assert len(literal.structured_content["matches"]) == 1
        names = await s.call_tool("search_files", {"path": wd.p(), "pattern": "*.rs", "mode": "name"})
        assert [f.rsplit("/", 1)[1] for f in names.structured_content["files"]] == ["b.rs"]
        capped = await s.call_tool("search_files", {"path": wd.p(), "pattern": "e", "max_results": 1})
        assert capped.structured_content["truncated"] is True and len(capped.structured_content["matches"]) == 1

        replaced = await s.call_tool("replace_in_files", {"files": [wd.p("src/a.py"), wd.p("nope.txt")],
                                                          "pattern": "Needle", "new_value": "Pin"})
        results = replaced.structured_content["results"]
        assert results[0] == {"file": wd.p("src/a.py"), "success": True, "replacements": 1}
        assert results[1]["success"] is False and results[1]["error"]
        assert (wd / "src/a.py").read_text() == "import os\nprint('Pin')\n"


async def test_execute_command_keeps_streams_apart(toolboxd, wd):
    async with session(mcp_url(toolboxd)) as s:
        done = await s.call_tool("execute_command", {"command": "pwd; echo oops >&2; exit 3", "cwd": wd.p(),
                                                     "envs": {"X": "1"}})
        assert done.structured_content == {"exit_code": 3, "stdout": wd.p() + "\n", "stderr": "oops\n",
                                           "truncated": False}
        assert not done.is_error
        late = await s.call_tool("execute_command", {"command": "sleep 5", "timeout": 1})
        assert late.is_error and "PROCESS_EXECUTION_TIMEOUT" in text_of(late)


async def test_session_tools(toolboxd, wd):
    async with session(mcp_url(toolboxd)) as s:
        started = await s.call_tool("session_start", {"session_id": "mcp-py"})
        assert started.structured_content == {"session_id": "mcp-py"}
        await s.call_tool("session_exec", {"session_id": "mcp-py", "command": f"cd {wd.p()}; X=41"})
        launched = await s.call_tool("session_exec", {"session_id": "mcp-py",
                                                      "command": "for i in 1 2 3; do echo $((X+i)); done; pwd >&2"})
        command_id = launched.structured_content["command_id"]
        output, offset, piece = "", 0, None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            logs = await s.call_tool("session_logs", {"session_id": "mcp-py", "command_id": command_id,
                                                      "offset": offset})
            piece = logs.structured_content
            output += piece["output"]
            offset = piece["next_offset"]
            if not piece["running"] and not piece["more"]:
                break
            await anyio.sleep(0.05)
        assert piece["exit_code"] == 0 and piece["exit_cause"] == "exited"
        # Both streams, in arrival order (two pipes: stderr's line may come first).
        assert sorted(output.splitlines()) == sorted(["42", "43", "44", wd.p()])
        # Reading again from the end gives nothing new.
        again = await s.call_tool("session_logs", {"session_id": "mcp-py", "command_id": command_id,
                                                   "offset": offset})
        assert again.structured_content["output"] == ""
        unknown = await s.call_tool("session_logs", {"session_id": "nope", "command_id": "x"})
        assert unknown.is_error and "session not found" in text_of(unknown)


async def test_git_tools_clone_with_progress_status_and_commit(toolboxd, wd, local_tmp):
    origin = make_repo(local_tmp)
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value, total, message):
        progress.append((value, total, message))

    async with session(mcp_url(toolboxd)) as s:
        cloned = await s.call_tool("git_clone", {"url": f"file://{origin}", "path": wd.p("clone")},
                                   progress_callback=on_progress)
        assert not cloned.is_error, text_of(cloned)
        assert cloned.structured_content == {"path": wd.p("clone")}
        assert (wd / "clone/file29.txt").read_text().startswith("line 29")
        # Progress arrived, rising, out of 100, saying what the clone was doing.
        assert progress, "no progress notifications for the clone"
        values = [v for v, _, _ in progress]
        assert values == sorted(values) and len(set(values)) == len(values)
        assert all(total == 100 for _, total, _ in progress)
        assert any("checking out files" in (m or "") for _, _, m in progress)

        default_dir = await s.call_tool("git_clone", {"url": f"file://{origin}", "path": ""})
        assert default_dir.structured_content["path"].endswith("/origin-repo")

        (wd / "clone/new.txt").write_text("new\n")
        (wd / "clone/file00.txt").write_text("changed\n")
        status = await s.call_tool("git_status", {"path": wd.p("clone")})
        st = status.structured_content
        assert st["current_branch"] == "main" and st["detached"] is False
        assert {(f["name"], f["worktree"]) for f in st["files"]} == {("new.txt", "Untracked"),
                                                                     ("file00.txt", "Modified")}
        committed = await s.call_tool("git_commit", {"path": wd.p("clone"), "message": "mcp commit", "files": ["."],
                                                     "author": "A", "email": "a@example.com"})
        assert len(committed.structured_content["hash"]) == 40
        clean = await s.call_tool("git_status", {"path": wd.p("clone")})
        assert clean.structured_content["files"] == []
        log = subprocess.run(["git", "log", "-1", "--format=%an %s"], cwd=wd / "clone", capture_output=True,
                             text=True, check=True)
        assert log.stdout.strip() == "A mcp commit"
        missing = await s.call_tool("git_status", {"path": wd.p()})
        assert missing.is_error and "GIT_REPO_NOT_FOUND" in text_of(missing)


async def test_run_code_returns_charts_as_png_images_and_data(toolboxd):
    code = (
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3], [4, 5, 6], label='up')\n"
        "plt.title('rising')\n"
        "plt.show()\n"
        "print('drawn')\n"
    )
    async with session(mcp_url(toolboxd)) as s:
        result = await s.call_tool("run_code", {"code": code, "language": "python"})
        assert not result.is_error, text_of(result)
        data = result.structured_content
        assert data["exit_code"] == 0 and data["stdout"] == "drawn\n"
        assert len(data["charts"]) == 1
        chart = data["charts"][0]
        assert chart["type"] == "line" and chart["title"] == "rising" and "png" not in chart
        images = [block for block in result.content if block.type == "image"]
        assert len(images) == 1 and images[0].mime_type == "image/png"
        assert base64.b64decode(images[0].data).startswith(b"\x89PNG\r\n\x1a\n")
        # Daytona's convention: argv without the script's path.
        js = await s.call_tool("run_code", {"code": "console.log(process.argv.slice(1).join(','))",
                                            "language": "javascript", "argv": ["a", "b"]})
        assert js.structured_content["stdout"] == "a,b\n"
        bad = await s.call_tool("run_code", {"code": "print(1)", "language": "cobol"})
        assert bad.is_error and "unsupported language" in text_of(bad)


async def test_preview_link(toolboxd):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        async with session(mcp_url(toolboxd)) as s:
            up = await s.call_tool("preview_link", {"port": port, "description": "web", "check_server": True})
            host = toolboxd.toolbox_url.split("://", 1)[1]
            assert up.structured_content == {
                "url": f"http://{host}/proxy/{port}/", "local_url": f"http://127.0.0.1:{port}/",
                "port": port, "listening": True, "description": "web"}
    async with session(mcp_url(toolboxd)) as s:
        down = await s.call_tool("preview_link", {"port": port})
        assert down.structured_content["listening"] is False


# --------------------------------------------------------------------------------------------
# Protocol behaviour
# --------------------------------------------------------------------------------------------


async def test_tool_errors_are_results_and_bad_arguments_protocol_errors(toolboxd):
    async with session(mcp_url(toolboxd)) as s:
        missing = await s.call_tool("get_file_info", {"file_path": "no/such/file"})
        assert missing.is_error is True
        assert "file not found" in text_of(missing) and "FILE_NOT_FOUND" in text_of(missing)
        with pytest.raises(MCPError) as wrong_type:
            await s.call_tool("execute_command", {"command": 5})
        assert wrong_type.value.error.code == -32602
        assert "`command`" in wrong_type.value.error.message
        with pytest.raises(MCPError) as unknown:
            await s.call_tool("no_such_tool", {})
        assert unknown.value.error.code == -32602


async def test_cancelled_command_tree_is_killed(toolboxd, wd):
    """A `sleep 100` (in a subshell, so it is a tree) is cancelled by the client: the request
    ends at once and every process of the tree is gone."""
    pids = wd / "pids"
    command = f"(sleep 100 & echo $! >> {pids}; wait) & echo $! >> {pids}; echo $$ >> {pids}; wait"
    async with session(mcp_url(toolboxd)) as s:
        async with anyio.create_task_group() as tg:
            async def call():
                await s.call_tool("execute_command", {"command": command})
                pytest.fail("the cancelled call returned a result")

            tg.start_soon(call)
            await wait_until(lambda: pids.exists() and len(pids.read_text().split()) == 3, "the tree started")
            tg.cancel_scope.cancel()
        tree = [int(p) for p in pids.read_text().split()]
        await wait_until(lambda: all(gone(pid) for pid in tree), f"processes {tree} to end")
        # The session is still usable.
        ok = await s.call_tool("execute_command", {"command": "echo alive"})
        assert ok.structured_content["stdout"] == "alive\n"


async def test_long_command_reports_progress(toolboxd):
    seen = []

    async def on_progress(value, total, message):
        seen.append((value, message))

    async with session(mcp_url(toolboxd)) as s:
        done = await s.call_tool("execute_command", {"command": "sleep 1.2; echo done"}, progress_callback=on_progress)
    assert done.structured_content["stdout"] == "done\n"
    assert seen and seen[0] == (0.0, "command started")


async def test_reconnect_with_session_id_keeps_the_session(toolboxd):
    """A client that lost its connection comes back with its `Mcp-Session-Id` on a new
    connection: the session (and what it holds, a resource subscription) is still there."""
    url = mcp_url(toolboxd)
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    with httpx.Client(timeout=10) as first:
        response = first.post(url, json=init, headers=headers)
        assert response.status_code == 200
        sid = response.headers["mcp-session-id"]
    with httpx.Client(timeout=10) as second:
        h = {**headers, "mcp-session-id": sid, "mcp-protocol-version": "2025-11-25"}
        assert second.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=h).status_code == 202
        listed = second.post(url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=h)
        assert listed.status_code == 200 and '"execute_command"' in listed.text
        # Ending it makes the id unknown (404: the client must initialize again).
        assert second.delete(url, headers=h).status_code == 204
        again = second.post(url, json={"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, headers=h)
        assert again.status_code == 404


async def test_origin_is_checked(toolboxd):
    url = mcp_url(toolboxd)
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    with httpx.Client(timeout=10) as client:
        refused = client.post(url, json=init, headers={**headers, "origin": "http://evil.example:2280",
                                                       "host": "evil.example:2280"})
        assert refused.status_code == 403
        body = refused.json()
        assert body["code"] == "FORBIDDEN" and body["source"] == "DAYTONA_DAEMON" and "origin" in body["message"]
        local = client.post(url, json=init, headers={**headers, "origin": "http://localhost:6274"})
        assert local.status_code == 200


@pytest.mark.filterwarnings("ignore:resources/subscribe is removed")
async def test_resources_list_read_and_updates(toolboxd, wd):
    (wd / "watched.txt").write_text("v1\n")
    uri = f"file://{wd.p('watched.txt')}"
    updates: list[str] = []

    async def on_message(message):
        if getattr(message, "method", None) == "notifications/resources/updated":
            updates.append(message.params.uri)

    async with session(mcp_url(toolboxd), message_handler=on_message) as s:
        uris, cursor, pages = [], None, 0
        while True:
            from mcp.types import PaginatedRequestParams
            page = await s.list_resources(params=PaginatedRequestParams(cursor=cursor) if cursor else None)
            uris += [r.uri for r in page.resources]
            pages += 1
            cursor = page.next_cursor
            if not cursor:
                break
        assert uri in uris and len(uris) == len(set(uris))
        read = await s.read_resource(uri)
        assert read.contents[0].text == "v1\n" and read.contents[0].mime_type == "text/plain"
        await s.subscribe_resource(uri)
        await s.call_tool("upload_file", {"file_path": wd.p("watched.txt"), "content": "v2\n", "overwrite": True})
        await wait_until(lambda: uri in updates, "notifications/resources/updated")
        with pytest.raises(MCPError):
            await s.read_resource(f"file://{wd.p('absent.txt')}")


async def test_current_revision_client(toolboxd, wd):
    """`Client` negotiates the newest revision (2026-07-28, no session): tools, progress,
    cancellation (closing the request's stream) and `subscriptions/listen` work there too."""
    (wd / "f.txt").write_text("x")
    async with Client(mcp_url(toolboxd)) as client:
        assert client.protocol_version == "2026-07-28"
        assert len((await client.list_tools()).tools) == len(TOOLS)
        got = await client.call_tool("get_file_info", {"file_path": wd.p("f.txt")})
        assert got.structured_content["size"] == 1
        pidfile = wd / "pid"
        with anyio.move_on_after(30) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.call_tool, "execute_command", {"command": f"echo $$ > {pidfile}; sleep 100"})
                await wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), "the command started")
                tg.cancel_scope.cancel()
        assert not scope.cancelled_caught
        pid = int(pidfile.read_text())
        await wait_until(lambda: gone(pid), "the cancelled command to end")
        async with client.listen(resource_subscriptions=[f"file://{wd.p('f.txt')}"]) as sub:
            assert sub.honored.resource_subscriptions == [f"file://{wd.p('f.txt')}"]
            await client.call_tool("upload_file", {"file_path": wd.p("f.txt"), "content": "y", "overwrite": True})
            with anyio.fail_after(15):
                async for event in sub:
                    assert event.uri == f"file://{wd.p('f.txt')}"
                    break


# --------------------------------------------------------------------------------------------
# stdio: `toolboxd mcp --workdir DIR`
# --------------------------------------------------------------------------------------------


async def test_stdio_mode_serves_the_same_tools_and_ends_its_processes(tmp_path):
    binary = toolboxd_bin()
    if not binary.is_file():
        pytest.skip(f"toolboxd binary not found at {binary}")
    work = tmp_path / "work"
    work.mkdir()
    (work / "readme.md").write_text("# hi\n")
    params = StdioServerParameters(command=str(binary), args=["mcp", "--workdir", str(work)],
                                   env={"HOME": str(tmp_path), "RUST_LOG": "warn"}, cwd=str(tmp_path))
    pidfile = work / "session.pid"
    with open(tmp_path / "stderr.log", "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as s:
                init = await s.initialize()
                assert init.server_info.name == "toolboxd"
                assert {t.name for t in (await s.list_tools()).tools} == TOOLS
                pwd = await s.call_tool("execute_command", {"command": "pwd"})
                assert pwd.structured_content["stdout"] == f"{work}\n"
                readme = await s.call_tool("download_file", {"file_path": "readme.md"})
                assert text_of(readme) == "# hi\n"
                await s.call_tool("session_start", {"session_id": "bg"})
                await s.call_tool("session_exec", {"session_id": "bg", "command": f"echo $$ > {pidfile}; sleep 300"})
                await wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), "the session command")
    # stdin closed: toolboxd ended, and with it the session's shell.
    pid = int(pidfile.read_text())
    await wait_until(lambda: gone(pid), "the session shell to end with toolboxd mcp")
    assert "listening" not in (tmp_path / "stderr.log").read_text()
