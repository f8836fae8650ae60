"""protocols.config: defaults < TOML file < environment < flags, and errors that name where a bad value came from."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from protocols.config import ConfigError, Option, env_name, options_from_parser, resolve, take_defaults

PREFIX = "HALLSYNC_TEST_"


def _parser() -> argparse.ArgumentParser:
    """A command with a str, an int, a bool and a path option, as the real CLIs declare them."""
    p = argparse.ArgumentParser(prog="t")
    p.add_argument("--config", type=Path)
    p.add_argument("--hall", default="hall-0")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--watch", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--data-dir", type=Path, default=Path("/var/lib/t"))
    p.add_argument("--format", choices=("json", "console"), default="json")
    p.add_argument("--force", action="store_true", default=False)
    return p


def _resolve(tmp_path: Path, toml: str | None, env: dict[str, str], argv: list[str]) -> dict[str, object]:
    parser = _parser()
    defaults = take_defaults(parser)
    config = None
    if toml is not None:
        config = tmp_path / "t.toml"
        config.write_text(toml)
        argv = ["--config", str(config), *argv]
    flags = {k: v for k, v in vars(parser.parse_args(argv)).items() if k != "config"}
    options = options_from_parser(parser, defaults=defaults, no_env=("force",))
    return resolve(options, file=config, tables=[("run",)], env=env, env_prefix=PREFIX, flags=flags)


def test_each_layer_overrides_the_one_below_for_str_int_bool_and_path(tmp_path: Path) -> None:
    assert _resolve(tmp_path, None, {}, []) == {
        "hall": "hall-0", "rounds": 10, "watch": False, "data_dir": Path("/var/lib/t"), "format": "json",
        "force": False}
    toml = 'hall = "from-top"\nrounds = 20\nwatch = true\ndata_dir = "/file"\n[run]\nhall = "from-table"\n'
    by_file = _resolve(tmp_path, toml, {}, [])
    assert (by_file["hall"], by_file["rounds"], by_file["watch"], by_file["data_dir"]) == (
        "from-table", 20, True, Path("/file"))
    env = {"HALLSYNC_TEST_HALL": "from-env", "HALLSYNC_TEST_ROUNDS": "30", "HALLSYNC_TEST_WATCH": "no",
           "HALLSYNC_TEST_DATA_DIR": "/env"}
    by_env = _resolve(tmp_path, toml, env, [])
    assert (by_env["hall"], by_env["rounds"], by_env["watch"], by_env["data_dir"]) == (
        "from-env", 30, False, Path("/env"))
    by_flag = _resolve(tmp_path, toml, env, ["--hall", "from-flag", "--rounds", "40", "--watch",
                                             "--data-dir", "/flag"])
    assert (by_flag["hall"], by_flag["rounds"], by_flag["watch"], by_flag["data_dir"]) == (
        "from-flag", 40, True, Path("/flag"))
    assert by_flag.sources["hall"] == "--hall"   # type: ignore[attr-defined]
    assert by_env.sources["rounds"] == "environment variable HALLSYNC_TEST_ROUNDS"   # type: ignore[attr-defined]


def test_env_names_dashes_and_empty_variables(tmp_path: Path) -> None:
    assert env_name("HALLSYNC_AGENT_", "data-dir") == "HALLSYNC_AGENT_DATA_DIR"
    assert env_name("HALLSYNC_DEMO_", "broker") == "HALLSYNC_DEMO_BROKER"
    assert _resolve(tmp_path, 'data-dir = "/dashed"\n', {"HALLSYNC_TEST_HALL": ""}, [])["data_dir"] == Path("/dashed")
    assert _resolve(tmp_path, None, {"HALLSYNC_TEST_HALL": ""}, [])["hall"] == "hall-0"   # empty = unset


def test_an_acting_flag_is_never_taken_from_the_environment(tmp_path: Path) -> None:
    assert _resolve(tmp_path, None, {"HALLSYNC_TEST_FORCE": "1"}, [])["force"] is False
    assert _resolve(tmp_path, "force = true\n", {}, [])["force"] is True   # a file names it on purpose


@pytest.mark.parametrize(("toml", "env", "names"), [
    ('rounds = "many"\n', {}, ["t.toml", "rounds", "'many'"]),
    ("[run]\nwatch = 3\n", {}, ["t.toml", "[run] watch", "true or false"]),
    ('format = "xml"\n', {}, ["t.toml", "format", "json, console"]),
    ("rounds = true\n", {}, ["t.toml", "rounds", "a number"]),
    ("hall = [1, 2]\n", {}, ["t.toml", "hall", "an array"]),
    (None, {"HALLSYNC_TEST_ROUNDS": "2.5"}, ["environment variable HALLSYNC_TEST_ROUNDS", "'2.5'"]),
    (None, {"HALLSYNC_TEST_WATCH": "maybe"}, ["environment variable HALLSYNC_TEST_WATCH", "true or false"]),
])
def test_a_bad_value_names_the_file_and_key_or_the_variable(tmp_path: Path, toml: str | None,
                                                             env: dict[str, str], names: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        _resolve(tmp_path, toml, env, [])
    for name in names:
        assert name in str(caught.value)


def test_a_bad_value_is_checked_by_the_flags_own_type(tmp_path: Path) -> None:
    def positive(text: str) -> int:
        if int(text) <= 0:
            raise argparse.ArgumentTypeError(f"{text} is not more than 0")
        return int(text)

    options = {"n": Option("n", parse=positive, default=1)}
    config = tmp_path / "c.toml"
    config.write_text("n = -3\n")
    with pytest.raises(ConfigError, match=r"c\.toml: n: bad value -3 \(-3 is not more than 0\)"):
        resolve(options, file=config)


def test_unreadable_files_and_unknown_keys(tmp_path: Path) -> None:
    options = {"n": Option("n", parse=int)}
    with pytest.raises(ConfigError, match="not found"):
        resolve(options, file=tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("n = \n")
    with pytest.raises(ConfigError, match=r"broken\.toml is not valid TOML"):
        resolve(options, file=broken)
    stray = tmp_path / "stray.toml"
    stray.write_text("n = 1\nnn = 2\n[run]\nm = 3\n[other]\nx = 1\n")
    assert resolve(options, file=stray, tables=[("run",)])["n"] == 1        # ignored: a sibling's keys
    with pytest.raises(ConfigError, match=r"unknown option\(s\) in config file .*stray.toml: nn, \[run\] m$"):
        resolve(options, file=stray, tables=[("run",)], unknown="error")


def test_flags_pass_through_positionals_and_skip_none() -> None:
    options = {"n": Option("n", parse=int, default=5)}
    assert resolve(options, flags={"n": None, "hall": "h1"}) == {"n": 5, "hall": "h1"}
