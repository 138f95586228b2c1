"""Start-up: the server answers initialize without loading a model library, an idle server
stays under 150 MB resident, and `asmopt serve` starts the same server. (The time initialize
takes, under 1 s, is a benchmark's figure: bench/lsp_latency.py prints it and fails above it.
These machines are shared, and the same work costs up to 1.6 times as much CPU from one
second to the next.)"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


# What torch, transformers (through tokenizers), vLLM and llama.cpp map when imported: the
# libraries that would make initialize slow and the server large; they load only when an LLM
# back-end is used.
MODEL_LIBRARIES = ("/torch/", "/tokenizers/", "/vllm/", "/llama_cpp/")


def _model_libraries(pid: int) -> set[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {lib.strip("/") for lib in MODEL_LIBRARIES if lib in maps}


@pytest.mark.asyncio
async def test_initialize_loads_no_model_library_and_idle_memory_is_small(workspace, lsp):
    async with lsp.session(workspace) as s:
        pid = s.client._server.pid
        assert _model_libraries(pid) == set()
        uri = s.open("prog.c")
        s.open("prog.s")
        await s.wait_for_lens(uri, "Optimize")
        await asyncio.sleep(1.5)  # let background work (debug build, assembler check) finish
        assert _model_libraries(pid) == set()
        rss = _rss_mb(pid)
        assert rss < 150, f"idle RSS {rss:.0f} MB"


@pytest.mark.filterwarnings("ignore::pytest.PytestWarning")
def test_serve_command_is_lazy_and_documented():
    done = subprocess.run(
        [sys.executable, "-m", "asmopt.cli", "serve", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "--tcp" in done.stdout and "--stdio" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "asmopt.cli", "serve", "--tcp", "nonsense"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "HOST:PORT" in bad.stderr


@pytest.mark.asyncio
async def test_serve_speaks_lsp_on_stdio(workspace):
    from lsprotocol import types
    from pytest_lsp import ClientServerConfig

    config = ClientServerConfig([sys.executable, "-m", "asmopt.cli", "serve", "--stdio"])
    client = await config.start()
    try:
        result = await client.initialize_session(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(), root_uri=workspace.as_uri()
            )
        )
        assert result.server_info.name == "asmopt"
        assert result.capabilities.code_lens_provider is not None
        assert result.capabilities.hover_provider
        await client.shutdown_session()
    finally:
        await client.stop()


def test_the_server_args_example_in_the_extension_settings_is_accepted():
    """The asmopt.serverArgs setting's own example must start the server (it used to name
    an option `asmopt serve` did not have); a bad option fails with the option named."""
    import json
    import re

    manifest = Path(__file__).parents[2] / "client-vscode" / "package.json"
    described = json.loads(manifest.read_text())["contributes"]["configuration"]["properties"][
        "asmopt.serverArgs"
    ]["markdownDescription"]
    example = json.loads(re.search(r"`(\[.*?\])`", described).group(1))
    assert example, described
    cli = [sys.executable, "-m", "asmopt.cli", "serve"]
    ok = subprocess.run([*cli, *example, "--check"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([*cli, "--bogus", "--check"], capture_output=True, text=True)
    assert bad.returncode == 2 and "No such option '--bogus'" in bad.stderr
