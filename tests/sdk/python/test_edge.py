"""Errors raised at the HTTP edge reach the SDK with the wire body: a URI the HTTP parser
refuses (414, before any route runs) and a JSON body over toolboxd's limit (413)."""

import pytest

from daytona.common.errors import DaytonaError

JSON_LIMIT = 16 * 1024 * 1024


def test_uri_over_the_parser_limit_is_a_414_with_a_message(sandbox):
    with pytest.raises(DaytonaError) as info:
        sandbox.fs.get_file_info("a" * 70_000)
    assert info.value.status_code == 414
    assert info.value.code == "URI_TOO_LONG"
    assert "65534" in str(info.value)


def test_json_body_over_the_limit_is_a_413_naming_it(sandbox):
    with pytest.raises(DaytonaError) as info:
        sandbox.process.exec("true #" + "x" * JSON_LIMIT)
    assert info.value.status_code == 413
    assert info.value.code == "PAYLOAD_TOO_LARGE"
    assert "16 MiB" in str(info.value)
    # The daemon and the SDK's connection pool go on working.
    assert sandbox.process.exec("echo ok").result == "ok\n"
