"""Every setting is an option and a variable, described, and the README's table is the code's.

The table of settings in the README is generated from :class:`app.config.Settings`; these
tests keep the two the same, read every setting both ways for every command that takes
it, walk every command's ``--help``, and start ``serve`` as a real process with a
misspelt variable and with a value it does not accept: it must stop with one line.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from app import cli, config
from app.config import SPECS, ConfigError, Spec

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
START, END = "<!-- settings-table:start -->\n", "<!-- settings-table:end -->"

#: What to type before a setting's option to reach each command's parser.
COMMAND_ARGV = {
    "serve": ["serve"],
    "check": ["check"],
    "link": ["link", "--customer", "ACME01"],
    "keys": ["keys", "list"],
    "revoke": ["revoke", "0123456789abcdef"],
    "mail": ["mail", "list"],
    "accounts": ["accounts", "allow-domain", "northwind", "invoices.example.co.uk"],
    "probe": ["probe", "--customer", "ACME01"],
    "demo": ["demo"],
}


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


def test_the_readme_table_of_settings_is_the_one_the_code_makes() -> None:
    text = README.read_text(encoding="utf-8")
    assert START in text and END in text, "the README lost its settings-table markers"
    in_readme = text[text.index(START) + len(START) : text.index(END)]
    assert in_readme == config.markdown_table(), (
        "README.md's table of settings differs from the code: paste the output of "
        "`python -m app.config` between the settings-table markers"
    )
    # Every setting has its row: name, option, variable, default, accepted values, meaning.
    for spec in SPECS.values():
        row = next(line for line in in_readme.splitlines() if f"`{spec.name}`" in line)
        cells = [cell.strip() for cell in row.strip("|").split(" | ")]
        assert cells[:3] == [f"`{spec.name}`", f"`{spec.option}`", f"`{spec.variable}`"]
        assert all(cells[3:]), f"{spec.name} has an empty column in the table"


def _option_argv(spec: Spec) -> list[str]:
    if spec.kind.flag:
        wanted = spec.kind.read(spec.kind.example)
        return [spec.option if wanted else "--no-" + spec.option[2:]]
    return [spec.option, spec.kind.example]


@pytest.mark.parametrize("spec", list(SPECS.values()), ids=list(SPECS))
def test_every_setting_is_an_option_and_a_variable_of_every_command_that_reads_it(
    spec: Spec,
) -> None:
    parser = cli.build_parser()
    assert spec.meta.commands, f"{spec.name} is read by no command"
    for command in spec.meta.commands:
        args = parser.parse_args([*COMMAND_ARGV[command], *_option_argv(spec)])
        by_option = config.collect({}, command=command, **cli._given(args))
        by_variable = config.collect({spec.variable: spec.kind.example}, command=command)
        assert by_option[spec.name] == by_variable[spec.name], (spec.name, command)
        # It took effect: the value given, not the default.
        assert by_option[spec.name] != spec.default, (spec.name, command)


def test_options_win_over_variables_and_unknown_ones_are_refused(tmp_path: Path) -> None:
    env = {
        "KASHFLOW_PERMALINK_STATE_DIR": str(tmp_path),
        "KASHFLOW_PERMALINK_SMTP_PORT": "2525",
        "KASHFLOW_PERMALINK_LMTP": "yes",
    }
    settings = config.load(env, command="serve", smtp_port="25", lmtp=False)
    assert (settings.smtp_port, settings.lmtp, settings.state_dir) == (25, False, tmp_path)
    with pytest.raises(ConfigError, match="KASHFLOW_PERMALINK_LMPT is not a setting"):
        config.load({"KASHFLOW_PERMALINK_LMPT": "true"})


def test_no_default_depends_on_the_directory_a_command_starts_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for spec in SPECS.values():
        if isinstance(spec.default, Path):
            assert spec.default.is_absolute(), spec.name
    # A relative path given by the operator is taken from where the command starts, once.
    monkeypatch.chdir(tmp_path)
    assert config.load({}, state_dir="var").state_dir == tmp_path / "var"


def _parsers(
    parser: argparse.ArgumentParser, path: str = ""
) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(path or "kashflow-permalink", parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _parsers(child, f"{path} {name}".strip())
    return found


def test_help_of_every_command_describes_every_option() -> None:
    parsers = _parsers(cli.build_parser())
    named = {path for path, _ in parsers}
    assert {"serve", "check", "link", "keys", "revoke", "mail list", "mail requeue", "probe"} <= (
        named
    )
    for path, parser in parsers:
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"`{path}`: {'/'.join(action.option_strings) or action.dest}"
    serve_help = run("serve", "--help")
    assert serve_help.returncode == 0
    # Each setting's option shows with what it means and its variable.
    for spec in config.specs("serve"):
        assert spec.option in serve_help.stdout
        assert spec.variable in " ".join(serve_help.stdout.split())


def test_a_misspelt_variable_stops_serve_with_one_line(tmp_path: Path) -> None:
    result = run(
        "serve",
        "--state-dir",
        str(tmp_path),
        env={"KASHFLOW_PERMALINK_KASHFLOW_URL": "http://127.0.0.1:9/api"},
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "KASHFLOW_PERMALINK_KASHFLOW_URL is not a setting" in result.stderr
    assert "did you mean KASHFLOW_PERMALINK_KASHFLOW_ENDPOINT?" in result.stderr


@pytest.mark.parametrize(
    ("args", "env", "said"),
    [
        (
            [],
            {"KASHFLOW_PERMALINK_LMTP": "ture"},
            "KASHFLOW_PERMALINK_LMTP must be true or false (also yes/no, on/off, 1/0), not 'ture'",
        ),
        (
            ["--http-port", "eighty"],
            {},
            "--http-port must be a port, 0-65535 (0 picks a free one), not 'eighty'",
        ),
        (["--role", "mail"], {}, "--role must be all, web or bot, not 'mail'"),
    ],
)
def test_a_value_a_setting_does_not_accept_stops_serve_with_one_line(
    tmp_path: Path, args: list[str], env: dict[str, str], said: str
) -> None:
    result = run("serve", "--state-dir", str(tmp_path), *args, env=env)
    assert result.returncode == 2
    assert result.stderr == f"kashflow-permalink: {said}\n"


def test_a_secret_setting_is_never_echoed(tmp_path: Path) -> None:
    result = run(
        "check",
        "--state-dir",
        str(tmp_path),
        env={"KASHFLOW_PERMALINK_KEYS": "1:not-a-key-but-secret-anyway"},
    )
    assert "not-a-key-but-secret-anyway" not in result.stdout + result.stderr
    assert result.returncode == 1 and "FAILED  server key" in result.stdout


def test_every_command_in_the_readme_is_one_the_parser_takes() -> None:
    """The operator's guide is followed by copying its shell blocks: each command in them
    must be one the parser takes."""
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"^```sh\n(.*?)^```", text, re.M | re.S)
    lines = [line.split("#", 1)[0] for block in blocks for line in block.splitlines()]
    commands = [
        match.group(1)
        for line in lines
        if (match := re.search(r"(?:^|[\s/])(?:kfp|kashflow-permalink) ([a-z][^>|;&]*)", line))
    ]
    parser = cli.build_parser()
    tried = set()
    for command in commands:
        if command.split()[0] not in COMMAND_ARGV:
            continue  # another program's line (sudo -u kashflow-permalink sh …)
        # A command quoted inside another (bash -c '… demo …'): its own words only.
        words = shlex.split(command.rstrip().rstrip("'"))
        parser.parse_args(words)  # SystemExit (a failed test) for anything it does not take
        tried.add(words[0])
    assert {"keys", "check", "mail", "accounts", "probe"} <= tried
