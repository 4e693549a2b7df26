#!/usr/bin/env python3
"""A minimal language server for bench/lsp.py: answers `initialize` and every
`textDocument/completion` at once with the same 50 items (one of them `path`), so the time a
completion takes through toolboxd minus the time straight over stdio is toolboxd's own cost.
Stdlib only; notifications are ignored; `exit` ends it."""

import json
import sys

ITEMS = [{"label": "path", "kind": 6, "detail": "module", "documentation": "os.path",
          "sortText": "apath", "insertText": "path"}]
ITEMS += [{"label": f"name_{i:02d}", "kind": 6, "documentation": {"kind": "markdown", "value": f"item {i}"},
           "sortText": f"b{i:02d}"} for i in range(49)]


def read(stream):
    length = None
    while True:
        line = stream.readline()
        if not line:
            return None
        line = line.strip()
        if not line:
            if length is not None:
                break
            continue
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return json.loads(stream.read(length))


def send(stream, message):
    body = json.dumps(message).encode()
    stream.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    stream.flush()


def main():
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while (message := read(stdin)) is not None:
        method, request_id = message.get("method"), message.get("id")
        if method == "exit":
            return
        if request_id is None or method is None:
            continue
        if method == "initialize":
            result = {"capabilities": {"textDocumentSync": 1, "completionProvider": {}},
                      "serverInfo": {"name": "bench-stub"}}
        elif method == "textDocument/completion":
            result = {"isIncomplete": False, "items": ITEMS}
        else:
            result = None
        send(stdout, {"jsonrpc": "2.0", "id": request_id, "result": result})


if __name__ == "__main__":
    main()
