"""One settings type: TOML, CLI flags and LSP settings agree, and mistakes are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from asmopt.model.settings import Settings, SettingsError, default_target, load_config


def test_camel_and_snake_case_are_the_same_setting() -> None:
    a = Settings.from_mapping({"maxNewTokens": 64, "benchBudget": 5, "allowNative": True})
    b = Settings.from_mapping({"max_new_tokens": 64, "bench_budget": 5, "allow_native": True})
    assert a == b
    assert a.to_dict(camel=True)["maxNewTokens"] == 64


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"samples": "four"}, "samples"),
        ({"temperature": True}, "temperature"),
        ({"policies": ["compiler", "gpt"]}, "unknown policy 'gpt'"),
        ({"sandbox": "yes"}, "sandbox"),
        ({"samplez": 3}, "unknown setting 'samplez'"),
        ({"compare": "fuzzy"}, "compare"),
        ({"samples": 0}, "samples"),
    ],
)
def test_wrong_settings_name_the_key(data: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_mapping(data)


def test_a_configured_llm_joins_the_default_policies() -> None:
    assert Settings().effective_policies() == ("compiler",)
    assert Settings(endpoint="http://127.0.0.1:1").effective_policies() == ("compiler", "openai")
    assert Settings(model="m.gguf").effective_policies() == ("compiler", "transformers")
    assert Settings(policies=("openai",), endpoint="x").effective_policies() == ("openai",)


def test_replace_ignores_unset_flags() -> None:
    base = Settings(samples=8)
    assert base.replace(samples=None, model=None) == base
    assert base.replace(cflags="-O2 -g").cflags == ("-O2", "-g")


def test_asmopt_toml_targets_and_settings(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.c").write_text("int main(void){return 0;}\n")
    (tmp_path / "asmopt.toml").write_text(
        '[settings]\nsamples = 2\npolicies = ["compiler"]\n\n'
        '[[target]]\nname = "a"\nsources = ["src/a.c"]\ntests = "t"\ncflags = "-O3 -g"\n'
        'compare = "floats"\nbenchmark_tests = ["big"]\n'
    )
    config = load_config(tmp_path)
    assert config.settings.samples == 2
    target = config.target_for(tmp_path / "src" / "a.c")
    assert target is not None and target.name == "a"
    assert target.cflags == ("-O3", "-g") and target.compare == "floats"
    assert target.benchmark_tests == ("big",)
    assert target.tests == (tmp_path / "t").resolve()


def test_bad_toml_is_reported_with_the_file(tmp_path: Path) -> None:
    (tmp_path / "asmopt.toml").write_text("[settings\n")
    with pytest.raises(SettingsError, match=r"asmopt\.toml"):
        load_config(tmp_path)
    (tmp_path / "asmopt.toml").write_text("[settings]\nsamples = 'x'\n")
    with pytest.raises(SettingsError, match="samples"):
        load_config(tmp_path)


def test_default_target_finds_tests_beside_the_file(tmp_path: Path) -> None:
    src = tmp_path / "p.c"
    src.write_text("int main(void){return 0;}\n")
    assert default_target(src).tests is None  # type: ignore[union-attr]
    (tmp_path / "tests").mkdir()
    assert default_target(src).tests == (tmp_path / "tests").resolve()  # type: ignore[union-attr]


def test_the_commands_time_to_the_settings_precision_by_default() -> None:
    """`asmopt verify --ci` and `asmopt bench --ci` default to the setting ``ci_target``'s
    default, the precision `optimize` and the editor time to."""
    import click

    from asmopt.commands.common import ci_option

    command = ci_option(click.Command("probe", callback=lambda target_ci: None))
    (option,) = [p for p in command.params if p.name == "target_ci"]
    assert option.default == Settings().ci_target == 0.03
