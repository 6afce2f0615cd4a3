"""Every `edgecls COMMAND --help` explains its command, and every hint names an option that exists
(issue 28, items 16 and 29)."""

from __future__ import annotations

import argparse
import ast
import re
import shlex

import pytest

from conftest import ROOT, run_edgecls
from edge_runtime.cli import main as cli
from edge_runtime.cli.bench import compare_parser

# The workstation commands come through entry points: the walk must see them too.
EXPECTED = {"classify", "bench", "verify", "camera", "doctor", "inspect", "collect", "review",
            "train", "convert", "demo", "deploy", "pull", "adopt", "bench compare"}
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _parsers() -> dict[str, argparse.ArgumentParser]:
    top = cli.build_parser()
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    found = dict(sub.choices)
    for name, parser in list(found.items()):  # commands with their own actions: `edgecls users add`
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                found.update({f"{name} {n}": p for n, p in a.choices.items()})
    compare = compare_parser()
    cli.finish_help(compare, cli.examples("bench compare"))
    found["bench compare"] = compare
    return found


PARSERS = _parsers()


def _help(name: str, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        cli.main([*name.split(), "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


def test_the_walk_sees_every_command():
    assert EXPECTED <= set(PARSERS), EXPECTED - set(PARSERS)


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_help_lists_every_option_with_a_description_and_ends_with_examples(name, capsys):
    text = _help(name, capsys)
    assert text.startswith(f"usage: edgecls {name}"), text[:200]
    assert "commands on the device" not in text  # not the top-level help
    parser = PARSERS[name]
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue  # hidden on purpose (tests only)
        assert action.help and action.help.strip(), f"{name}: {action.option_strings or action.dest} has no help"
        for option in action.option_strings:
            assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), f"{name}: {option} not in its help"
    assert "\nexamples:\n" in text, text[-400:]
    lines = text.split("\nexamples:\n", 1)[1].rstrip().splitlines()
    assert 1 <= len(lines) <= 4 and all(line.startswith("  edgecls ") for line in lines), lines


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_example_is_a_command_line_its_parser_takes(name):
    text = PARSERS[name].epilog or ""
    examples = [line.strip() for line in text.split("examples:", 1)[-1].splitlines() if line.strip()]
    assert examples
    for example in examples:
        words = shlex.split(example)
        assert words[0] == "edgecls"
        if name == "bench compare":
            assert words[1:3] == ["bench", "compare"]
            PARSERS[name].parse_args(words[3:])
        else:
            assert words[1:1 + len(name.split())] == name.split(), example
            cli.build_parser().parse_args(words[1:])


def test_a_mistyped_option_gets_close_matches_and_the_command_usage():
    p = run_edgecls("classify", "--top_k", "3", "model.tflite", "photo.jpg")
    assert p.returncode == 2
    assert p.stderr.startswith("usage: edgecls classify"), p.stderr
    assert "--top_k: did you mean --top-k?" in p.stderr.splitlines()[-1]
    assert "COMMAND ..." not in p.stderr  # not the top-level usage


def test_an_unknown_option_without_a_close_match_points_to_the_command_help():
    p = run_edgecls("verify", "bundle", "--zzz")
    assert p.returncode == 2 and p.stderr.startswith("usage: edgecls verify")
    assert "unrecognized arguments: --zzz" in p.stderr and "`edgecls verify --help`" in p.stderr


def _literals(path) -> list[str]:
    return [n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant)
            and isinstance(n.value, str)]


def test_every_hint_of_the_form_edgecls_command_option_names_an_option_of_that_command():
    """`edgecls NAME ... --opt` in any message: --opt is NAME's (the flags of the same literal)."""
    bad = []
    for pkg in ("edge_runtime", "train", "convert", "deploy"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for text in _literals(path):
                for m in re.finditer(r"edgecls (bench compare|[a-z]+)\b([^`;(),\n]*)", text):
                    name, rest = m.group(1), m.group(2)
                    if name not in PARSERS:
                        continue
                    known = {s for n, p in PARSERS.items() if name in (n, n.split()[0])
                             for a in p._actions for s in a.option_strings}
                    bad += [f"{path.relative_to(ROOT)}: edgecls {name} {o}" for o in OPTION.findall(rest)
                            if o not in known]
    assert not bad, bad


# The bundle reader serves every command that takes a bundle: its messages may name only options
# all of them have.
BUNDLE_USERS = ("classify", "verify", "bench", "camera", "inspect", "deploy")


def test_the_bundle_reader_names_no_option_some_of_its_commands_lack():
    shared = set.intersection(*({s for a in PARSERS[n]._actions for s in a.option_strings} for n in BUNDLE_USERS))
    bad = []
    for text in _literals(ROOT / "edge_runtime" / "bundle" / "format.py"):
        text = re.sub(r"edgecls [a-z]+[^`;(),\n]*", "", text)  # `edgecls NAME --opt`: checked above
        bad += [o for o in OPTION.findall(text) if o not in shared]
    assert not bad, bad


@pytest.mark.parametrize("argv", [
    ["verify", "{d}"], ["deploy", "{d}", "pi@127.0.0.1", "--dry-run"], ["inspect", "{d}"], ["bench", "{d}"],
    ["classify", "{d}", "{d}"], ["verify", "{d}/missing.tar.gz"],
])
def test_errors_on_a_folder_that_is_not_a_bundle_name_only_the_command_options(argv, tmp_path):
    (tmp_path / "photo.txt").write_text("not a bundle")
    p = run_edgecls(*[a.format(d=tmp_path) for a in argv])
    assert p.returncode != 0 and "Traceback" not in p.stderr, p.stderr
    known = {s for a in PARSERS[argv[0]]._actions for s in a.option_strings}
    named = set(OPTION.findall(p.stderr))
    assert named <= known, (argv[0], named - known, p.stderr)


@pytest.mark.parametrize("name", ["doctor", "users add", "bench compare"])
def test_help_command_is_the_command_help(name, capsys):
    """`edgecls help users add` prints what `edgecls users add --help` prints."""
    with pytest.raises(SystemExit) as e:
        cli.main(["help", *name.split()])
    assert e.value.code == 0
    assert capsys.readouterr().out == _help(name, capsys)
