"""`sandbox.create_lsp_server` of daytona==0.226.1 for python (pylsp) and typescript
(typescript-language-server), driven through the real SDK: the SDK's strict models parse every
answer (items a list, documentation an object, kind a number)."""

from __future__ import annotations

import pytest
from daytona import DaytonaLspServerNotInitializedError, LspCompletionPosition


def test_python_lsp_server(sandbox, wd):
    (wd / "main.py").write_text(
        "import os\nos.pa\n\n\ndef top_level(x):\n    return x\n\n\nclass Widget:\n    pass\n"
    )
    lsp = sandbox.create_lsp_server("python", wd.p())
    lsp.start()
    try:
        path = wd.p("main.py")
        lsp.did_open(path)
        completions = lsp.completions(path, LspCompletionPosition(line=1, character=5))
        assert isinstance(completions.items, list)
        assert "path" in [item.label for item in completions.items]
        for item in completions.items:
            assert item.kind is None or isinstance(item.kind, int)
        # Position 0 is valid.
        at_zero = lsp.completions(path, LspCompletionPosition(line=0, character=0))
        assert isinstance(at_zero.items, list)
        symbols = {s.name: s.kind for s in lsp.document_symbols(path)}
        assert symbols["top_level"] == 12 and symbols["Widget"] == 5, symbols
        # pylsp has no workspace/symbol: an empty list, not an error.
        assert lsp.sandbox_symbols("Widget") == []
        # A file edited on disk is seen by the next request.
        (wd / "main.py").write_text("def brand_new():\n    pass\n")
        assert [s.name for s in lsp.document_symbols(path)] == ["brand_new"]
        lsp.did_close(path)
    finally:
        lsp.stop()


def test_typescript_lsp_server(sandbox, wd):
    (wd / "index.ts").write_text(
        "export function greetUser(name: string): string {\n  return name;\n}\n"
        "export class Greeter {}\nconst s = 'x';\ns.\n"
    )
    (wd / "tsconfig.json").write_text('{"compilerOptions": {"strict": true}}\n')
    lsp = sandbox.create_lsp_server("typescript", wd.p())
    lsp.start()
    try:
        path = wd.p("index.ts")
        lsp.did_open(path)
        completions = lsp.completions(path, LspCompletionPosition(line=5, character=2))
        assert "toUpperCase" in [item.label for item in completions.items]
        for item in completions.items:
            assert item.documentation is None or isinstance(item.documentation, dict)
        names = {s.name: s.kind for s in lsp.document_symbols(path)}
        assert names["greetUser"] == 12 and names["Greeter"] == 5, names
        found = [s.name for s in lsp.sandbox_symbols("greetUser")]
        assert "greetUser" in found
        lsp.did_close(path)
    finally:
        lsp.stop()


def test_requests_before_start_are_typed_errors(sandbox, wd):
    (wd / "a.py").write_text("x = 1\n")
    lsp = sandbox.create_lsp_server("python", wd.p())
    with pytest.raises(DaytonaLspServerNotInitializedError):
        lsp.completions(wd.p("a.py"), LspCompletionPosition(line=0, character=0))
