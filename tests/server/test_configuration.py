"""Settings from initializationOptions, workspace/configuration and didChangeConfiguration;
a wrong type is reported naming the key, and the previous settings stay."""

from __future__ import annotations

import json

import pytest
from lsprotocol import types

pytestmark = pytest.mark.asyncio


async def test_good_settings_are_used_and_client_only_keys_ignored(workspace, lsp):
    settings = {
        "benchBudget": 3,
        "policies": ["compiler"],
        "interpreter": ["python3"],
        "trace": {"server": "verbose"},
    }
    async with lsp.session(workspace, settings=settings, init_settings={"samples": 2}) as s:
        uri = s.open("prog.c")
        await s.wait_for_lens(uri, "Optimize")
        assert not [m for m in s.client.messages if m.type == types.MessageType.Warning]


async def test_wrong_type_warns_naming_the_key_and_keeps_settings(workspace, lsp):
    async with lsp.session(workspace, init_settings={"benchBudget": "fast"}) as s:
        await s.wait_for(lambda: s.client.messages, what="a warning")
        (message,) = s.client.messages
        assert message.type == types.MessageType.Warning
        assert "benchBudget" in message.message

        s.client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"asmopt": {"samples": "many"}})
        )
        await s.wait_for(lambda: len(s.client.messages) == 2, what="second warning")
        assert "samples" in s.client.messages[1].message

        # a good change is taken silently, and runs still work
        s.client.set_configuration({"samples": 1, "benchBudget": 3}, section="asmopt")
        s.client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings=None)
        )
        lsp.set_fake(workspace, "faster")
        uri = s.open("prog.c")
        await s.command("asmopt.optimizeFunction", uri, "sum_to")
        await s.wait_for_lens(uri, "✓")
        assert len(s.client.messages) == 2


async def test_settings_reach_the_worker(workspace, lsp):
    # The fake optimizer records the settings it was given when asked to.
    lsp.set_fake(workspace, "faster")
    async with lsp.session(workspace, settings={"benchBudget": 3, "samples": 2}) as s:
        uri = s.open("prog.c")
        await s.command("asmopt.optimizeFunction", uri, "sum_to")
        await s.wait_for_lens(uri, "✓")
    record = json.loads((workspace / "settings-seen.json").read_text())
    assert record["bench_budget"] == 3.0 and record["samples"] == 2
