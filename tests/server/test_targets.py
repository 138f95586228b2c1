"""A library file (no main) that no target builds: the editor offers to declare one, and the
starter entry it writes is valid asmopt.toml naming the file and the program that calls it."""

from __future__ import annotations

import tomllib

import pytest
from lsprotocol import types

pytestmark = pytest.mark.asyncio

LIB = "long scale(long x)\n{\n    return x * 3;\n}\n"
RUNNER = '#include "lib.h"\nint main(void)\n{\n    return scale(2) != 6;\n}\n'


async def _actions(s, uri, only=None):
    found = await s.client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri),
            range=types.Range(types.Position(1, 0), types.Position(1, 0)),
            context=types.CodeActionContext(diagnostics=[], only=only),
        )
    )
    return found or []


def _declare(actions):
    return [a for a in actions if a.title.startswith("Declare an asmopt target")]


async def test_a_library_file_without_a_target_gets_a_starter_entry(workspace, lsp):
    (workspace / "lib.c").write_text(LIB)
    (workspace / "lib.h").write_text("long scale(long x);\n")
    (workspace / "run_tests.c").write_text(RUNNER)
    async with lsp.session(workspace) as s:
        uri = s.open("lib.c")
        (action,) = _declare(await _actions(s, uri))
        assert action.kind == types.CodeActionKind.QuickFix
        assert "lib.c" in action.title
        # No asmopt.toml yet: the edit creates it with the entry.
        create, text_edit = action.edit.document_changes
        assert create.uri.endswith("/asmopt.toml")
        entry = text_edit.edits[0].new_text
        table = tomllib.loads(entry)["target"][0]
        assert table["sources"] == ["lib.c", "run_tests.c"]
        assert table["test_command"] == "{bin}"
        # A file with main is its own target: no such action.
        assert _declare(await _actions(s, s.open("prog.c"))) == []
        # Asked for quick fixes only, it is still offered.
        assert _declare(await _actions(s, uri, only=[types.CodeActionKind.QuickFix]))


async def test_an_existing_config_gets_the_entry_appended_and_a_listed_file_none(workspace, lsp):
    (workspace / "lib.c").write_text(LIB)
    (workspace / "asmopt.toml").write_text("[settings]\nsamples = 2")
    async with lsp.session(workspace) as s:
        uri = s.open("lib.c")
        (action,) = _declare(await _actions(s, uri))
        ((toml_uri, (edit,)),) = action.edit.changes.items()
        assert toml_uri.endswith("/asmopt.toml")
        assert edit.range.start == types.Position(1, 11)
        merged = "[settings]\nsamples = 2" + edit.new_text
        assert tomllib.loads(merged)["target"][0]["name"] == "lib"
        (workspace / "asmopt.toml").write_text(merged)
        assert _declare(await _actions(s, uri)) == []


async def test_optimizing_a_library_file_no_target_builds_says_how_to_declare_one(workspace, lsp):
    (workspace / "lib.c").write_text(LIB)
    async with lsp.session(workspace, optimizer="real") as s:
        uri = s.open("lib.c")
        await s.command("asmopt.optimizeFunction", uri, "scale")
        await s.wait_for(
            lambda: any("no [[target]]" in m and "[[target]]\nname" in m for m in s.messages()),
            what="the message with a starter entry",
        )
