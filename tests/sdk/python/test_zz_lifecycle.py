"""stop / start / delete, on a daemon of their own so the other modules keep a
running sandbox whatever order the tests run in."""

from __future__ import annotations

import shutil

import pytest
from daytona import DaytonaNotFoundError

from conftest import make_client, start_daemon


@pytest.fixture(scope="module")
def own_daemon():
    d = start_daemon("lifecycle")
    try:
        yield d
    finally:
        d.stop()
        shutil.rmtree(d.root, ignore_errors=True)


@pytest.fixture(scope="module")
def own(own_daemon):
    client = make_client(own_daemon)
    sb = client.create(timeout=60)
    return client, sb


def test_stop_and_start(own, own_daemon):
    client, sb = own
    sb.stop(timeout=30)
    assert sb.state == "stopped"
    assert client.get(sb.id).state == "stopped"

    sb.start(timeout=30)
    assert sb.state == "started"
    assert client.get(sb.id).state == "started"

    # the toolbox works after a restart
    sb.fs.upload_file(b"after restart", str(own_daemon.workdir / "after.txt"))
    assert (own_daemon.workdir / "after.txt").read_bytes() == b"after restart"
    assert sb.fs.download_file(str(own_daemon.workdir / "after.txt")) == b"after restart"


def test_daytona_stop_start_helpers(own):
    client, sb = own
    client.stop(sb, timeout=30)
    assert sb.state == "stopped"
    client.start(sb, timeout=30)
    assert sb.state == "started"


def test_delete(own):
    client, sb = own
    client.delete(sb)
    # After delete the sandbox is gone: get() is a 404, or it reports "destroyed".
    try:
        got = client.get(sb.id)
    except DaytonaNotFoundError:
        pass
    else:
        assert got.state in ("destroyed", "destroying"), got.state
    listed = {s.id: s.state for s in client.list()}
    assert sb.id not in listed or listed[sb.id] in ("destroyed", "destroying")


def test_delete_wait():
    # A fresh daemon: the control plane manages exactly one sandbox.
    d = start_daemon("delete-wait")
    try:
        client = make_client(d)
        sb = client.create(timeout=60)
        sb.delete(timeout=30, wait=True)
        assert sb.state == "destroyed"
    finally:
        d.stop()
        shutil.rmtree(d.root, ignore_errors=True)
