"""Each default lives in one place (``Settings``): the editor's contributed settings and the
protocol document are checked against it, so they cannot drift apart."""

from __future__ import annotations

import json
from pathlib import Path

from asmopt.model.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
# Server settings the editor does not contribute, and why.
NOT_CONTRIBUTED = {
    "apiKey": "a secret: read from $ASMOPT_API_KEY, never written into settings files",
}
# Editor settings the server does not read (the client's own).
CLIENT_ONLY = {"interpreter", "serverArgs", "trace.server"}


def _contributed() -> dict[str, dict]:
    package = json.loads((ROOT / "client-vscode" / "package.json").read_text())
    configuration = package["contributes"]["configuration"]
    sections = configuration if isinstance(configuration, list) else [configuration]
    found: dict[str, dict] = {}
    for section in sections:
        for key, spec in section["properties"].items():
            found[key.removeprefix("asmopt.")] = spec
    return found


def _same(ours: object, theirs: object) -> bool:
    if ours is None:  # unset: the editor writes an empty string or list
        return theirs in (None, "", [])
    if isinstance(ours, list | tuple):
        return list(ours) == list(theirs or [])
    return ours == theirs


def test_every_server_setting_is_contributed_with_our_default():
    contributed = _contributed()
    ours = Settings().to_dict(camel=True)
    missing = [k for k in ours if k not in contributed and k not in NOT_CONTRIBUTED]
    assert not missing, f"settings the editor does not offer: {missing}"
    wrong = {
        k: (v, contributed[k].get("default"))
        for k, v in ours.items()
        if k in contributed and not _same(v, contributed[k].get("default"))
    }
    assert not wrong, f"defaults that differ (ours, package.json): {wrong}"
    stray = set(contributed) - set(ours) - CLIENT_ONLY
    assert not stray, f"contributed settings the server does not know: {sorted(stray)}"


def test_the_protocol_document_names_every_setting():
    text = (ROOT / "docs" / "protocol.md").read_text()
    unnamed = [k for k in Settings().to_dict(camel=True) if f"`{k}`" not in text]
    assert not unnamed, f"docs/protocol.md does not name: {unnamed}"


def test_dataset_build_options_have_build_options_defaults():
    """`asmopt dataset build` keeps its option defaults beside the command (importing the
    builder at start-up would slow every command), so they are checked here against
    ``BuildOptions``, where they are defined."""
    import dataclasses

    from asmopt.commands.dataset import dataset_build
    from asmopt.model.evaluation.dataset_build import BuildOptions

    defaults = {f.name: f.default for f in dataclasses.fields(BuildOptions)}
    checked = []
    for param in dataset_build.params:
        if param.name in defaults and param.name != "tokenizer":  # a path here, a counter there
            flag = getattr(param, "is_flag", False)
            default = bool(param.default is True) if flag else param.default  # flags: off
            assert default == defaults[param.name], (param.name, param.default)
            checked.append(param.name)
    assert {"val_fraction", "seed", "max_tests", "compare", "min_speedup"} <= set(checked)
