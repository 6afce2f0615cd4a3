"""Start-up: `edgecls --help` and `edgecls COMMAND` import only what they need (issue 31, item 5).
Times are the benchmark's (benchmarks/folder_throughput.py); here, what is imported."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points

from edge_runtime.cli import main as cli

HEAVY = ("numpy", "PIL", "ai_edge_litert", "tflite_runtime", "tensorflow", "edge_runtime.web.server",
         "edge_runtime.bundle.classifier", "train", "convert", "deploy")


def _imported_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nimport json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_top_level_help_and_import_load_nothing_heavy():
    loaded = _imported_after("from edge_runtime.cli.main import main\n"
                             "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
                             "import edge_runtime")
    assert not [m for m in HEAVY if m in loaded]


def test_a_command_loads_only_its_own_module():
    loaded = _imported_after("from edge_runtime.cli.main import build_parser, _command\n"
                             "build_parser(_command(['doctor', '--json'])).parse_args(['doctor', '--json'])")
    assert not [m for m in HEAVY if m in loaded]
    assert "edge_runtime.cli.collect" not in loaded and "edge_runtime.cli.camera" not in loaded


def test_the_lazy_tables_say_what_the_registered_parsers_say():
    full = cli.build_parser()
    helps = full.commands  # type: ignore[attr-defined]
    for name, (help_line, _) in cli.DEVICE_COMMANDS.items():
        assert helps[name] == help_line, name
    for name, (help_line, _, _) in cli.WORKSTATION_COMMANDS.items():
        assert helps[name] == help_line, name
    eps = {ep.name for ep in entry_points(group=cli.COMMANDS_GROUP)}
    assert {ep for _, ep, _ in cli.WORKSTATION_COMMANDS.values()} == eps


def test_a_command_parser_built_alone_equals_the_full_one():
    full = cli.build_parser()
    sub = next(a for a in full._actions if a.__class__.__name__ == "_SubParsersAction")
    for name in [*cli.DEVICE_COMMANDS, *cli.WORKSTATION_COMMANDS]:
        alone = cli.build_parser(name)
        sub_alone = next(a for a in alone._actions if a.__class__.__name__ == "_SubParsersAction")
        assert sub_alone.choices[name].format_help() == sub.choices[name].format_help(), name
