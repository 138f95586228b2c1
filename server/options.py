"""The server's settings: the workspace's ``asmopt.toml`` overlaid with the editor's ``asmopt``
section (camelCase keys of :class:`asmopt.model.settings.Settings`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from asmopt.model.settings import Config, Settings, SettingsError

# Settings the VS Code client reads itself (docs/protocol.md); the server ignores them.
CLIENT_ONLY_KEYS = frozenset({"interpreter", "serverArgs", "server_args", "trace", "trace.server"})


def editor_settings(data: Any) -> dict[str, Any]:
    """The part of an editor ``asmopt`` section the server reads; raises
    :class:`SettingsError` when it is not an object."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"the asmopt settings must be an object, got {data!r}")
    return {k: v for k, v in data.items() if k not in CLIENT_ONLY_KEYS}


@dataclass
class ServerOptions:
    """What the editor chose, and the settings that result (validated)."""

    editor: dict[str, Any] = field(default_factory=dict)
    settings: Settings = field(default_factory=Settings)

    def update(self, data: Any, base: Settings | None = None) -> Settings:
        """Take a new editor section; on a bad value raise :class:`SettingsError` and keep
        the previous settings."""
        editor = editor_settings(data)
        settings = Settings.from_mapping(editor, base=base or Settings())
        self.editor = editor
        self.settings = settings
        return settings

    def for_workspace(self, config: Config | None) -> Settings:
        """Settings for a job: the workspace's ``asmopt.toml`` settings with the editor's on
        top (the editor's choice wins)."""
        base = config.settings if config is not None else Settings()
        try:
            return Settings.from_mapping(self.editor, base=base)
        except SettingsError:
            return self.settings
