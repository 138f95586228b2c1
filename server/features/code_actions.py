"""Code actions (kind ``refactor.rewrite``): "Optimize function `f`" for the function under
the cursor, "Optimize file", and "Apply optimized `f` (1.31×)" once a verified faster
candidate exists; and (``targets.py``) "Declare an asmopt target" for a library file that
no target builds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from lsprotocol import types

from asmopt.server.features import targets

if TYPE_CHECKING:
    from asmopt.server.server import AsmoptLanguageServer

KIND = types.CodeActionKind.RefactorRewrite


def _wanted(only: Sequence[str] | None) -> bool:
    if not only:
        return True
    return any(kind == KIND or KIND.startswith(f"{kind}.") for kind in only)


def _action(title: str, command: str, arguments: list) -> types.CodeAction:
    return types.CodeAction(
        title=title,
        kind=KIND,
        command=types.Command(title=title, command=command, arguments=arguments),
    )


def register(server: AsmoptLanguageServer) -> None:
    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[KIND, targets.KIND], resolve_provider=False),
    )
    async def code_actions(
        ls: AsmoptLanguageServer, params: types.CodeActionParams
    ) -> list[types.CodeAction]:
        uri = params.text_document.uri
        buffer = ls.documents.get(uri)
        if buffer is None or buffer.too_large:
            return []
        declare = await targets.code_actions(ls, buffer, params.context.only)
        if not _wanted(params.context.only):
            return declare
        source = ls.source_of(uri)
        actions = []
        functions = await ls.functions(buffer)
        here = None
        for fn in functions:
            if fn.contains(params.range.start):
                here = fn
        if here is not None:
            actions.append(
                _action(
                    f"Optimize function `{here.name}`", "asmopt.optimizeFunction", [uri, here.name]
                )
            )
        actions.append(_action("Optimize file", "asmopt.optimizeFile", [uri]))
        if source is not None:
            if here is not None:
                result = ls.results.get(source, here.name)
                if result is not None and result.faster:
                    actions.append(
                        _action(
                            f"Apply optimized `{here.name}` ({result.median:.2f}×)",
                            "asmopt.applyCandidate",
                            [uri, here.name],
                        )
                    )
            whole = ls.results.get(source, None)
            if whole is not None and whole.faster:
                actions.append(
                    _action(
                        f"Apply optimized file ({whole.median:.2f}×)",
                        "asmopt.applyCandidate",
                        [uri, None],
                    )
                )
        return actions + declare
