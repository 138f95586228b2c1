"""Which target builds a file, and a way to declare one: a C file without ``main`` that no
``[[target]]`` of ``asmopt.toml`` lists cannot be optimized (a library function is optimized
through the program that calls it), so the code actions offer "Declare an asmopt target for
FILE", which appends a starter entry (``settings.starter_target``) to the ``asmopt.toml``
that governs the file, or creates it. The user finishes the entry; nothing runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lsprotocol import types

from asmopt.model.settings import (
    CONFIG_FILE,
    SettingsError,
    config_root,
    has_main,
    load_config,
    starter_target,
)

if TYPE_CHECKING:
    from asmopt.server.documents import Buffer
    from asmopt.server.server import AsmoptLanguageServer

KIND = types.CodeActionKind.QuickFix


def undeclared_library(path: Path, text: str, workspace: Path) -> Path | None:
    """The folder whose ``asmopt.toml`` should declare a target for ``path`` when the file is
    C without ``main`` that no target lists; else None (blocking: reads the config)."""
    if path.suffix != ".c" or has_main(text):
        return None
    root = config_root(path, workspace)
    try:
        config = load_config(root)
    except SettingsError:
        return None  # the configuration problem is reported where it is read
    return None if config.targets_containing(path) else root


def declare_target_edit(path: Path, root: Path) -> types.WorkspaceEdit:
    """Append a starter ``[[target]]`` for ``path`` to ``root/asmopt.toml`` (made if absent)."""
    toml = root / CONFIG_FILE
    uri = toml.as_uri()
    entry = starter_target(path, root)
    if toml.exists():
        text = toml.read_text(errors="replace")
        lines = text.split("\n")
        end = types.Position(len(lines) - 1, len(lines[-1]))
        prefix = "" if not text else ("\n" if text.endswith("\n") else "\n\n")
        edit = types.TextEdit(types.Range(end, end), prefix + entry)
        return types.WorkspaceEdit(changes={uri: [edit]})
    start = types.Position(0, 0)
    return types.WorkspaceEdit(
        document_changes=[
            types.CreateFile(uri=uri, options=types.CreateFileOptions(ignore_if_exists=True)),
            types.TextDocumentEdit(
                text_document=types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=None),
                edits=[types.TextEdit(types.Range(start, start), entry)],
            ),
        ]
    )


async def code_actions(
    server: AsmoptLanguageServer, buffer: Buffer, only: Sequence[str] | None
) -> list[types.CodeAction]:
    """The "declare a target" action for ``buffer`` when it needs one."""
    if only and not any(kind == KIND or KIND.startswith(f"{kind}.") for kind in only):
        return []
    path = server.path_of(buffer.uri)
    if path is None:
        return []
    root = await server.in_thread(
        undeclared_library, path, buffer.text, server.workspace_root(path)
    )
    if root is None:
        return []
    edit = await server.in_thread(declare_target_edit, path, root)
    return [
        types.CodeAction(
            title=f"Declare an asmopt target for {path.name} (no target builds it) in "
            f"{CONFIG_FILE}",
            kind=KIND,
            edit=edit,
        )
    ]
