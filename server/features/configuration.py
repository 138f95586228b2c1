"""Settings from ``initializationOptions.settings``, ``workspace/configuration`` (section
``asmopt``) and ``workspace/didChangeConfiguration``. A bad value is reported with
``window/showMessage`` (Warning) naming the key as the editor spells it; the previous
settings stay in force."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lsprotocol import types

from asmopt.model.settings import Settings, SettingsError
from asmopt.server.options import editor_settings

if TYPE_CHECKING:
    from asmopt.server.server import AsmoptLanguageServer

SECTION = "asmopt"


def _culprit(data: dict[str, Any]) -> str | None:
    """The first key of ``data`` that is wrong on its own."""
    for key, value in data.items():
        try:
            Settings.from_mapping({key: value})
        except SettingsError:
            return key
    return None


def apply_settings(server: AsmoptLanguageServer, data: Any, origin: str) -> bool:
    """Take new editor settings; True if they were accepted."""
    try:
        server.options.update(data)
    except SettingsError as err:
        try:
            key = _culprit(editor_settings(data))
        except SettingsError:
            key = None
        named = f"setting `{SECTION}.{key}`" if key else f"the `{SECTION}` settings"
        server.show(
            f"{named} ({origin}) is not valid: {err}. Keeping the previous settings.",
            types.MessageType.Warning,
        )
        return False
    return True


async def pull_settings(server: AsmoptLanguageServer) -> None:
    caps = server.client_capabilities.workspace
    if not (caps and caps.configuration):
        return
    try:
        values = await server.workspace_configuration_async(
            types.ConfigurationParams(items=[types.ConfigurationItem(section=SECTION)])
        )
    except Exception as err:
        server.log(f"asmopt: workspace/configuration failed: {err}")
        return
    if values and values[0] is not None:
        apply_settings(server, values[0], "workspace/configuration")


def register(server: AsmoptLanguageServer) -> None:
    pending: list[Any] = []

    @server.feature(types.INITIALIZE)
    def initialize(ls: AsmoptLanguageServer, params: types.InitializeParams) -> None:
        options = params.initialization_options
        if isinstance(options, dict) and options.get("settings") is not None:
            pending.append(options["settings"])

    @server.feature(types.INITIALIZED)
    async def initialized(ls: AsmoptLanguageServer, params: types.InitializedParams) -> None:
        ls.send_status("starting")
        while pending:
            apply_settings(ls, pending.pop(0), "initializationOptions")
        try:
            await pull_settings(ls)
        finally:
            ls.settings_ready.set()
        ls.send_status()
        from asmopt.server.features.watch import register_watchers

        ls.spawn(register_watchers(ls))

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def changed(ls: AsmoptLanguageServer, params: types.DidChangeConfigurationParams) -> None:
        settings = params.settings
        if isinstance(settings, dict) and isinstance(settings.get(SECTION), dict):
            apply_settings(ls, settings[SECTION], "didChangeConfiguration")
        else:
            await pull_settings(ls)
