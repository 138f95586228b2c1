"""One module per LSP feature; each has ``register(server)``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from asmopt.server.server import AsmoptLanguageServer


def register_all(server: AsmoptLanguageServer) -> None:
    from asmopt.server.features import (
        apply,
        code_actions,
        code_lens,
        configuration,
        diagnostics,
        hover,
        inlay_hints,
        navigation,
        optimize,
        profile,
        symbols,
        text_sync,
        watch,
    )

    for feature in (
        configuration,
        text_sync,
        diagnostics,
        code_lens,
        code_actions,
        inlay_hints,
        hover,
        symbols,
        navigation,
        optimize,
        apply,
        profile,
        watch,
    ):
        feature.register(server)
