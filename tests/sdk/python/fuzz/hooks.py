"""schemathesis hooks for test_openapi_fuzz.py: keep every generated path inside the daemon's
work dir.

The toolbox API takes absolute paths (the SDKs send them), so a fuzzer left alone would ask
the daemon to delete `/` or chmod `/etc`. Before each request, every string in the query, the
path parameters and the body loses its leading slashes and its `..` components, so it names
something under the work dir. (The daemon under test also runs as `nobody` when the tests run
as root, so a path that slipped through could not harm the machine either.) The change keeps a
value valid or invalid as it was: empty strings stay empty, and no value gets longer. Body
strings also lose their percent escapes (`without_escapes` says why).
"""

from __future__ import annotations

import re
from typing import Any

import schemathesis

_PARENT = re.compile(r"(^|/)\.\.(?=/|$)")
_ESCAPE = re.compile(r"%(?=[0-9A-Fa-f]{2})")


def confine(value: Any) -> Any:
    if isinstance(value, str):
        text = value.lstrip("/")
        while _PARENT.search(text):
            text = _PARENT.sub(r"\1_", text)
        if value and not text:
            text = "_"
        return text
    if isinstance(value, list):
        return [confine(item) for item in value]
    if isinstance(value, dict):
        return {key: confine(item) for key, item in value.items()}
    return value


@schemathesis.hook
def before_call(context, case, kwargs):  # noqa: ARG001
    if case.query:
        case.query = confine(case.query)
    if case.path_parameters:
        case.path_parameters = confine(case.path_parameters)
    if isinstance(case.body, (dict, list, str)):
        case.body = without_escapes(confine(case.body))


def without_escapes(value: Any) -> Any:
    """Body strings lose their percent escapes (`%C2` becomes `_C2`).

    schemathesis percent-decodes a path parameter before it quotes it (so that its quoting is
    idempotent), and its stateful phase reuses ids it saw in earlier requests' paths, already
    encoded. A session created with the literal id `g%C2%A7%28gG%28` was then asked for as
    `/process/session/g%C2%A7%28gG%28`, which names `g§(gG(`, another session (deleted a moment
    before): a right 404 that ST302 ("created resource not found") reported. Ids with escapes
    stay reachable when their `%` is sent as `%25` (tests/it/session.rs checks it).
    """
    if isinstance(value, str):
        return _ESCAPE.sub("_", value)
    if isinstance(value, list):
        return [without_escapes(item) for item in value]
    if isinstance(value, dict):
        return {key: without_escapes(item) for key, item in value.items()}
    return value


# A request the schema allows that is refused because of what is on disk now: a directory where
# a file is needed or the other way round, a directory deleted without `recursive`, permissions
# asked to change nothing (`mode`, `owner` and `group` may each be left out, but not all three),
# git's scope `local` without the repository. The wire answer for these is Daytona's 400
# (`INVALID_FILE_PATH`, `BAD_REQUEST`), which the SDKs expect; a schema cannot say "valid unless
# the path is a directory", so schemathesis's positive-data check reports them. (So is a commit
# when nothing is staged, and a work-tree operation on a bare repository.) Only these
# messages are let through; any other 400 to a valid request still fails the run.
STATE_REFUSALS = (
    "path points to a directory",
    "not a directory",
    "cannot delete directory without recursive flag",
    "nothing to change: give at least one of mode, owner, group",
    "scope local needs the repository path",
    "nothing to commit",
    "the repository is bare",
    "group not found",
    "user not found",
)

# Refusals of values whose rules a JSON Schema pattern cannot carry in full: regular expressions
# and globs that do not compile, git's rules for ref, remote, config item and signature names,
# and the pairing of `files[i].path` with `files[i].file` parts in a bulk upload.
SYNTAX_REFUSALS = (
    "invalid glob pattern",
    "invalid pattern: regex parse error",
    "invalid branch name",
    "is not a valid remote name",
    "invalid config item name",
    "invalid author",
    "reading part",
    "multipart",
)


@schemathesis.hook
def filter_failure(context, failure, case, response):  # noqa: ARG001
    if failure.code != "ST202" or response.status_code != 400:
        return True
    try:
        message = response.json().get("message", "")
    except ValueError:
        return True
    return not any(refusal in message for refusal in STATE_REFUSALS + SYNTAX_REFUSALS)
