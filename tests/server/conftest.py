"""Shared pieces of the language-server tests: a workspace with a small C program and its
tests, and a client talking to a real ``python -m asmopt.server`` process whose worker runs
the fake optimizer (``fake_optimizer.py``) unless a test asks for the real one."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Union

import pytest
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

HERE = Path(__file__).parent
FAKE = HERE / "fake_optimizer.py"

PROG_C = """\
#include <stdio.h>

long sum_to(long n)
{
    long s = 0;
    for (long i = 1; i <= n; i++)
        s += i * i % 7;
    return s;
}

int main(void)
{
    long n;
    if (scanf("%ld", &n) != 1)
        return 1;
    printf("%ld\\n", sum_to(n));
    return 0;
}
"""

# Hand-written, so the fake can mark `square` and tests can check the replaced region.
PROG_S = """\
\t.text
\t.globl\tsquare
\t.type\tsquare, @function
square:
\t.cfi_startproc
\tmovl\t%edi, %eax
\timull\t%edi, %eax
\tret
\t.cfi_endproc
\t.size\tsquare, .-square
\t.globl\tmain
\t.type\tmain, @function
main:
\t.cfi_startproc
\tmovl\t$3, %edi
\tcall\tsquare
\txorl\t%eax, %eax
\tret
\t.cfi_endproc
\t.size\tmain, .-main
\t.section\t.note.GNU-stack,"",@progbits
"""

CAPABILITIES = types.ClientCapabilities(
    window=types.WindowClientCapabilities(work_done_progress=True),
    workspace=types.WorkspaceClientCapabilities(
        configuration=True,
        code_lens=types.CodeLensWorkspaceClientCapabilities(refresh_support=True),
        inlay_hint=types.InlayHintWorkspaceClientCapabilities(refresh_support=True),
        workspace_edit=types.WorkspaceEditClientCapabilities(
            document_changes=True, resource_operations=[types.ResourceOperationKind.Create]
        ),
    ),
)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A folder with prog.c, prog.s and tests/ (two tests)."""
    (tmp_path / "prog.c").write_text(PROG_C)
    (tmp_path / "prog.s").write_text(PROG_S)
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "small.in").write_text("10\n")
    (tests / "big.in").write_text("1000\n")
    return tmp_path


def set_fake(workspace: Path, mode: str, **extra: Any) -> None:
    (workspace / "fake.json").write_text(json.dumps({"mode": mode, **extra}))


def set_fake_profile(workspace: Path, functions: dict[str, int], total: int, **extra: Any) -> None:
    """Have the fake profiler answer with these per-function instruction counts."""
    control = workspace / "fake.json"
    config = json.loads(control.read_text()) if control.exists() else {}
    config["profile"] = {"functions": functions, "total": total, **extra}
    control.write_text(json.dumps(config))


def profiles_made(workspace: Path) -> int:
    """How many profiles the fake profiler made in ``workspace``."""
    made = workspace / "profiles-made.txt"
    return len(made.read_text().splitlines()) if made.exists() else 0


class Session:
    """A started client plus what the tests look at."""

    def __init__(self, client: LanguageClient, root: Path) -> None:
        self.client = client
        self.root = root
        self.refreshes = 0
        self.edits: list[types.ApplyWorkspaceEditParams] = []
        self.statuses: list[Any] = []
        self.registrations: list[types.Registration] = []
        self.versions: dict[str, int] = {}

    def uri(self, name: str) -> str:
        return (self.root / name).as_uri()

    def open(self, name: str, language: str | None = None, text: str | None = None) -> str:
        uri = self.uri(name)
        if text is None:
            text = (self.root / name).read_text()
        language = language or ("c" if name.endswith(".c") else "asm")
        self.versions[uri] = 1
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                types.TextDocumentItem(uri=uri, language_id=language, version=1, text=text)
            )
        )
        return uri

    def change(self, uri: str, text: str, range_: types.Range | None = None) -> None:
        self.versions[uri] += 1
        if range_ is None:
            change: Any = types.TextDocumentContentChangeWholeDocument(text=text)
        else:
            change = types.TextDocumentContentChangePartial(range=range_, text=text)
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                types.VersionedTextDocumentIdentifier(uri=uri, version=self.versions[uri]), [change]
            )
        )

    def close(self, uri: str) -> None:
        self.client.text_document_did_close(
            types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri))
        )

    async def lenses(self, uri: str) -> list[str]:
        found = await self.client.text_document_code_lens_async(
            types.CodeLensParams(types.TextDocumentIdentifier(uri))
        )
        return [lens.command.title for lens in found or []]

    async def command(self, name: str, *args: Any) -> Any:
        return await self.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command=name, arguments=list(args))
        )

    async def wait_for(self, predicate, timeout: float = 15.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    async def wait_for_lens(self, uri: str, prefix: str, timeout: float = 15.0) -> list[str]:
        async def check() -> list[str] | None:
            titles = await self.lenses(uri)
            return titles if any(t.startswith(prefix) for t in titles) else None

        return await self.wait_for(check, timeout, f"a lens starting {prefix!r}")

    def messages(self) -> list[str]:
        return [m.message for m in self.client.messages]

    def progress_kinds(self) -> list[list[str]]:
        return [[v.kind for v in values] for values in self.client.progress_reports.values()]


def _fix_code_action_parsing(client: LanguageClient) -> None:
    """lsprotocol's client side reads every code action that carries a command as a bare
    Command (its hook only asks whether "command" is present); VS Code does not."""
    converter = client.protocol._converter

    def hook(obj: Any, _: type) -> Any:
        if isinstance(obj.get("command"), str):
            return converter.structure(obj, types.Command)
        return converter.structure(obj, types.CodeAction)

    # typing.Union, not X | Y: the key must equal the type lsprotocol registered.
    converter.register_structure_hook(Union[types.Command, types.CodeAction], hook)  # noqa: UP007


def server_env(optimizer: str | None = "fake") -> dict[str, str]:
    env = dict(os.environ)
    env.pop("ASMOPT_WORKER_OPTIMIZE", None)
    env.pop("ASMOPT_WORKER_PROFILE", None)
    if optimizer == "fake":
        env["ASMOPT_WORKER_OPTIMIZE"] = f"{FAKE}:optimize"
        # No profile unless fake.json asks for one: the lenses other tests expect stay.
        env["ASMOPT_WORKER_PROFILE"] = f"{FAKE}:profile_program"
    return env


@asynccontextmanager
async def session(
    root: Path,
    *,
    settings: dict[str, Any] | None = None,
    init_settings: dict[str, Any] | None = None,
    optimizer: str | None = "fake",
    capabilities: types.ClientCapabilities = CAPABILITIES,
):
    """Start a server for workspace ``root``; yields a :class:`Session`."""
    config = ClientServerConfig(
        server_command=[sys.executable, "-m", "asmopt.server"], server_env=server_env(optimizer)
    )
    client = await config.start()
    assert isinstance(client, LanguageClient)
    _fix_code_action_parsing(client)
    s = Session(client, root)
    if settings is not None:
        client.set_configuration(settings, section="asmopt")

    @client.feature(types.WORKSPACE_CODE_LENS_REFRESH)
    def lens_refresh(ls: Any, params: Any) -> None:
        s.refreshes += 1

    @client.feature(types.WORKSPACE_INLAY_HINT_REFRESH)
    def hint_refresh(ls: Any, params: Any) -> None:
        return None

    @client.feature(types.WORKSPACE_APPLY_EDIT)
    def apply_edit(
        ls: Any, params: types.ApplyWorkspaceEditParams
    ) -> types.ApplyWorkspaceEditResult:
        s.edits.append(params)
        return types.ApplyWorkspaceEditResult(applied=True)

    @client.feature(types.CLIENT_REGISTER_CAPABILITY)
    def register_capability(ls: Any, params: types.RegistrationParams) -> None:
        s.registrations.extend(params.registrations)

    @client.feature("asmopt/status")
    def status(ls: Any, params: Any) -> None:
        s.statuses.append(params)

    options = {"settings": init_settings} if init_settings is not None else None
    await client.initialize_session(
        types.InitializeParams(
            capabilities=capabilities,
            root_uri=root.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name="ws")],
            initialization_options=options,
        )
    )
    try:
        yield s
    finally:
        try:
            await asyncio.wait_for(client.shutdown_session(), timeout=10)
        finally:
            await client.stop()


def living_markers(marker: str) -> list[int]:
    """Pids of processes whose command line contains ``marker`` (read from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z":
            found.append(int(entry))
    return found


def gcc_available() -> bool:
    try:
        return subprocess.run(["gcc", "--version"], capture_output=True).returncode == 0
    except OSError:
        return False


@pytest.fixture
def lsp():
    """The helpers above, for test modules (which cannot import conftest by name)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        session=session,
        set_fake=set_fake,
        set_fake_profile=set_fake_profile,
        profiles_made=profiles_made,
        living_markers=living_markers,
        MARKER="# asmopt-fake-candidate",
        CHILD_MARKER="1000.4242",
        PROG_C=PROG_C,
        PROG_S=PROG_S,
        CAPABILITIES=CAPABILITIES,
    )
