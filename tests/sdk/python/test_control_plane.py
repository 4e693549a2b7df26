"""The control-plane calls of daytona==0.226.1 against toolboxd's sdk-api listener.

Lifecycle calls that change the sandbox state (stop/start/delete) live in
test_zz_lifecycle.py, on a daemon of their own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from daytona import DaytonaNotFoundError, ListSandboxesQuery


def test_create_returns_started_sandbox(created, toolboxd):
    sb = created.sandbox
    assert sb.id
    assert sb.state == "started"
    assert isinstance(sb.cpu, int) and isinstance(sb.memory, int) and isinstance(sb.disk, int)
    assert sb.labels.get("code-toolbox-language") == "python"
    # the toolbox is reached through the sdk-api listener's /toolbox prefix
    assert sb.toolbox_proxy_url.rstrip("/") == toolboxd.sdk_api_url + "/toolbox"


def test_create_does_not_stall_on_socketio(created):
    # Daytona() opens a Socket.IO websocket at {api_url}/socket.io/ in the
    # background; the control plane has none. create() must not wait on it.
    assert created.create_seconds < 10, f"create() took {created.create_seconds:.1f}s"


def test_get_work_dir(sandbox, toolboxd):
    assert Path(sandbox.get_work_dir()).resolve() == toolboxd.workdir


def test_get_user_home_dir(sandbox, toolboxd):
    assert Path(sandbox.get_user_home_dir()).resolve() == toolboxd.home


def test_get_by_id(daytona, sandbox):
    got = daytona.get(sandbox.id)
    assert got.id == sandbox.id
    assert got.name == sandbox.name
    assert got.state == "started"
    assert got.toolbox_proxy_url == sandbox.toolbox_proxy_url
    # the returned object is a working sandbox
    assert got.get_work_dir() == sandbox.get_work_dir()


def test_get_by_name(daytona, sandbox):
    assert sandbox.name
    assert daytona.get(sandbox.name).id == sandbox.id


def test_get_unknown_is_not_found(daytona):
    with pytest.raises(DaytonaNotFoundError) as ei:
        daytona.get("no-such-sandbox-0000")
    assert ei.value.status_code == 404


def test_list(daytona, sandbox):
    items = list(daytona.list())
    assert sandbox.id in [s.id for s in items]
    mine = next(s for s in items if s.id == sandbox.id)
    assert mine.state == "started"

    items = list(daytona.list(ListSandboxesQuery(labels={"code-toolbox-language": "python"}, limit=10)))
    assert sandbox.id in [s.id for s in items]


def test_refresh_data(sandbox):
    sandbox.refresh_data()
    assert sandbox.state == "started"


def test_set_labels(daytona, sandbox):
    new = {"project": "toolboxd", "team": "sdk-tests", "code-toolbox-language": "python"}
    returned = sandbox.set_labels(new)
    assert returned == new
    assert sandbox.labels == new
    assert daytona.get(sandbox.id).labels == new


def test_get_preview_link(sandbox):
    link = sandbox.get_preview_link(3000)
    assert link.sandbox_id == sandbox.id
    assert isinstance(link.url, str) and link.url.startswith(("http://", "https://"))
    assert "3000" in link.url
    assert isinstance(link.token, str)


def test_toolbox_proxy_url_endpoint(sandbox):
    # The SDK calls this when the sandbox JSON has an empty toolboxProxyUrl.
    res = sandbox._sandbox_api.get_toolbox_proxy_url(sandbox.id)
    assert res.url.rstrip("/") == sandbox.toolbox_proxy_url.rstrip("/")


# ---------------------------------------------------------------- signed URLs
# sandbox.download_url()/upload_url() fetch GET /sandbox/{id}/signing-key from
# the control plane and sign locally (HMAC-SHA256 over
# "v1:files:{METHOD}:{path}:{expires}"), producing
#   {toolboxProxyUrl}/{id}/files/download?path=&expires=&signature=v1_...
#   {toolboxProxyUrl}/{id}/files/upload-v2?path=&expires=&signature=v1_...
# which are used without any Authorization header.


def test_download_url(sandbox, wd):
    (wd / "signed dl é.txt").write_bytes(b"signed download")
    url = sandbox.download_url(wd.p("signed dl é.txt"))
    parts = urlsplit(url)
    assert parts.path.endswith(f"/{sandbox.id}/files/download")
    assert "signature=v1_" in parts.query and "expires=" in parts.query
    # the signature is HMAC-SHA256 with the key served by GET /sandbox/{id}/signing-key
    q = parse_qs(parts.query)
    key = sandbox._ensure_signing_key()
    assert isinstance(key, str) and key
    mac = hmac.new(key.encode(), f"v1:files:GET:{q['path'][0]}:{q['expires'][0]}".encode(), hashlib.sha256).digest()
    assert q["signature"][0] == "v1_" + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    assert q["path"][0] == wd.p("signed dl é.txt")
    r = httpx.get(url)
    assert r.status_code == 200, r.text
    assert r.content == b"signed download"


def test_download_url_with_ttl(sandbox, wd):
    (wd / "ttl.bin").write_bytes(os.urandom(5000))
    url = sandbox.download_url(wd.p("ttl.bin"), ttl_seconds=120)
    r = httpx.get(url)
    assert r.status_code == 200
    assert r.content == (wd / "ttl.bin").read_bytes()
    # 0 = never expires
    url = sandbox.download_url(wd.p("ttl.bin"), ttl_seconds=0)
    assert "expires=0" in url
    assert httpx.get(url).content == (wd / "ttl.bin").read_bytes()


def test_upload_url_multipart(sandbox, wd):
    dst = wd / "up" / "signed + up.bin"
    payload = os.urandom(100_000)
    url = sandbox.upload_url(str(dst))
    assert urlsplit(url).path.endswith(f"/{sandbox.id}/files/upload-v2")
    r = httpx.post(url, files={"file": ("whatever.bin", payload)})
    assert 200 <= r.status_code < 300, r.text
    assert dst.read_bytes() == payload


def test_upload_url_raw_body(sandbox, wd):
    dst = wd / "raw.bin"
    payload = os.urandom(70_000)
    url = sandbox.upload_url(str(dst))
    r = httpx.post(url, content=payload, headers={"Content-Type": "application/octet-stream"})
    assert 200 <= r.status_code < 300, r.text
    assert dst.read_bytes() == payload


def test_rotate_signing_key(sandbox, wd):
    (wd / "k.txt").write_bytes(b"k")
    old_key = sandbox._ensure_signing_key()
    sandbox.rotate_signing_key()
    new_key = sandbox._ensure_signing_key()
    assert isinstance(new_key, str) and new_key
    assert new_key != old_key
    r = httpx.get(sandbox.download_url(wd.p("k.txt")))
    assert r.status_code == 200 and r.content == b"k"
