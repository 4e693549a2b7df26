"""A Python client generated from openapi/toolbox.json with openapi-python-client works.

The client is generated into a temp dir at test time (nothing generated is checked in) and
drives, against the session's daemon: upload, list, download, execute, a session command and git
status. The generator skips the two uploads whose bodies have no schema (`bulk-upload`: parts
named `files[i].path`/`files[i].file`; `upload-v2`: raw bytes or multipart); `POST /files/upload`
stands for them here.
"""

from __future__ import annotations

import importlib
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def toolbox_client(tmp_path_factory):
    generator = Path(sys.executable).with_name("openapi-python-client")
    if not generator.exists():
        pytest.skip("openapi-python-client is not installed (tests/sdk/python/requirements.txt)")
    out = tmp_path_factory.mktemp("generated")
    subprocess.run(
        [str(generator), "generate", "--path", str(REPO / "openapi" / "toolbox.json"),
         "--meta", "none", "--output-path", str(out / "toolbox_client")],
        check=True, capture_output=True, text=True, cwd=out, timeout=300,
    )
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module("toolbox_client")
    finally:
        sys.path.remove(str(out))
        for name in [n for n in sys.modules if n.split(".")[0] == "toolbox_client"]:
            del sys.modules[name]
        shutil.rmtree(out, ignore_errors=True)


def api(name: str):
    return importlib.import_module(f"toolbox_client.api.{name}")


def test_generated_client_drives_the_daemon(toolbox_client, toolboxd) -> None:
    models = importlib.import_module("toolbox_client.models")
    types = importlib.import_module("toolbox_client.types")
    client = toolbox_client.Client(base_url=toolboxd.toolbox_url.rstrip("/"), raise_on_unexpected_status=True)

    # upload
    form = models.UploadForm(file=types.File(payload=io.BytesIO(b"hello from a generated client\n"),
                                             file_name="hello.txt"))
    response = api("files.upload_legacy").sync_detailed(client=client, body=form, path="gen/hello.txt")
    assert response.status_code == 200, response.content

    # list
    entries = api("files.list_files").sync(client=client, path="gen")
    assert [entry.name for entry in entries] == ["hello.txt"]
    assert entries[0].size == len(b"hello from a generated client\n")

    # download (the body is bytes: read the raw response)
    response = api("files.download_file").sync_detailed(client=client, path="gen/hello.txt")
    assert response.status_code == 200
    assert response.content == b"hello from a generated client\n"

    # an error is the typed ErrorBody
    missing = api("files.file_info").sync(client=client, path="gen/missing.txt")
    assert isinstance(missing, models.ErrorBody)
    assert missing.status_code == 404 and missing.code == "FILE_NOT_FOUND"

    # execute
    result = api("process.execute").sync(
        client=client, body=models.ExecuteRequest(command="cat gen/hello.txt"))
    assert result.exit_code == 0
    assert result.result == "hello from a generated client\n"

    # session exec
    created = api("process.create_session").sync_detailed(
        client=client, body=models.CreateSessionRequest(session_id="generated"))
    assert created.status_code == 201, created.content
    executed = api("process.execute_command").sync(
        client=client, session_id="generated",
        body=models.SessionExecuteRequest(command="echo from-session"))
    assert executed.exit_code == 0
    assert "from-session" in executed.output

    # git status
    init = api("git.git_init").sync_detailed(client=client, body=models.GitInitRequest(path="gen"))
    assert init.status_code == 201, init.content
    status = api("git.status").sync(client=client, path="gen")
    assert isinstance(status, models.GitStatus), status
    assert [f.name for f in status.file_status] == ["hello.txt"]
