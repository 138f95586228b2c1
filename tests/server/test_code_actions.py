"""Code actions (refactor.rewrite): optimize the function under the cursor, the file, and
apply a verified faster candidate."""

from __future__ import annotations

import pytest
from lsprotocol import types

pytestmark = pytest.mark.asyncio


async def _actions(s, uri, line, only=None):
    found = await s.client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri),
            range=types.Range(types.Position(line, 2), types.Position(line, 2)),
            context=types.CodeActionContext(diagnostics=[], only=only),
        )
    )
    return found or []


async def test_actions_for_the_function_under_the_cursor(workspace, lsp):
    lsp.set_fake(workspace, "faster")
    async with lsp.session(workspace) as s:
        uri = s.open("prog.c")
        actions = await _actions(s, uri, 5)
        assert [a.title for a in actions] == ["Optimize function `sum_to`", "Optimize file"]
        assert all(a.kind == types.CodeActionKind.RefactorRewrite for a in actions)
        assert actions[0].command.command == "asmopt.optimizeFunction"
        assert list(actions[0].command.arguments) == [uri, "sum_to"]
        # outside any function: only the file
        assert [a.title for a in await _actions(s, uri, 0)] == ["Optimize file"]
        # a client asking only for quick fixes gets nothing
        assert await _actions(s, uri, 5, only=[types.CodeActionKind.QuickFix]) == []

        await s.command(actions[0].command.command, *actions[0].command.arguments)
        await s.wait_for_lens(uri, "✓")
        titles = [a.title for a in await _actions(s, uri, 5)]
        assert titles == [
            "Optimize function `sum_to`",
            "Optimize file",
            "Apply optimized `sum_to` (1.31×)",
        ]
        apply = (await _actions(s, uri, 5))[2]
        assert apply.command.command == "asmopt.applyCandidate"
        assert list(apply.command.arguments) == [uri, "sum_to"]
        # main has no candidate of its own
        main_titles = [a.title for a in await _actions(s, uri, 12)]
        assert main_titles == ["Optimize function `main`", "Optimize file"]


async def test_optimize_file_offers_a_whole_file_apply(workspace, lsp):
    lsp.set_fake(workspace, "faster")
    async with lsp.session(workspace) as s:
        uri = s.open("prog.s")
        await s.command("asmopt.optimizeFile", uri)

        async def has_apply():
            return any(a.title == "Apply optimized file (1.31×)" for a in await _actions(s, uri, 5))

        await s.wait_for(has_apply, what="the whole-file apply action")
