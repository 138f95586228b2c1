"""One place decides a file's workspace for the CLI and the editor: the nearest asmopt.toml
upwards (within the editor's folder), read once, and the store beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from asmopt.model.settings import SettingsError, Workspace


def test_the_nearest_asmopt_toml_wins(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "asmopt.toml").write_text('[settings]\npolicies = ["compiler"]\n')
    sub = tmp_path / "lib" / "sub"
    sub.mkdir(parents=True)
    (sub / "asmopt.toml").write_text("[settings]\nsamples = 3\n")
    (sub / "deep").mkdir()
    source = sub / "deep" / "prog.c"
    source.write_text("int main(void) { return 0; }\n")
    for top in (None, tmp_path):  # the CLI (no bound) and the editor (its folder)
        workspace = Workspace.of(source, top)
        assert workspace.root == sub.resolve()
        assert workspace.config.settings.samples == 3 and workspace.problem is None
    with Workspace.of(source).open_store() as store:
        store.put("k", {"kind": "test"})
    assert (sub / ".asmopt").is_dir() and not (tmp_path / ".asmopt").exists()


def test_a_broken_asmopt_toml_raises_or_is_reported(tmp_path: Path) -> None:
    (tmp_path / "asmopt.toml").write_text("[settings\n")
    source = tmp_path / "prog.c"
    source.write_text("int main(void) { return 0; }\n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        Workspace.of(source)
    lenient = Workspace.of(source, tmp_path, strict=False)
    assert lenient.root == tmp_path.resolve() and "not valid TOML" in (lenient.problem or "")
    assert lenient.config.targets == ()
