"""The package stays light to import and its command line answers."""

import subprocess
import sys

from medlabeler.cli import build_parser, main


def test_import_medlabeler_loads_neither_torch_nor_qt():
    code = (
        "import sys, medlabeler, medlabeler.cli, medlabeler.engine.errors;"
        "heavy = [m for m in ('torch', 'qtpy', 'PySide6', 'napari') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_documented_command_is_there():
    commands = build_parser()._subparsers._group_actions[0].choices
    for name in ("init", "import-labels", "status", "export", "pretrain", "train", "predict",
                 "evaluate", "models", "score", "queue", "benchmark", "demo", "app", "relink", "history",
                 "remove-label", "learn"):
        assert name in commands


def test_missing_project_is_a_clear_error(tmp_path, capsys):
    assert main(["status", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "nowhere: does not exist" in err  # a typo in the path, said as such
    (tmp_path / "folder").mkdir()
    assert main(["status", str(tmp_path / "folder")]) == 2
    assert "not a medlabeler project" in capsys.readouterr().err


def test_each_command_says_what_it_does_in_its_own_help():
    """`medlabeler import-labels --help` showed only "project path": the line the command list
    gives was missing where a user asks about that one command."""
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    listed = {action.dest: action.help for action in sub._choices_actions}
    for name, parser in sub.choices.items():
        assert parser.format_help().split("\n\n")[1].replace("\n", " ").split() == listed[name].split(), name
    path_help = sub.choices["import-labels"].format_help()
    assert "a folder of masks named after the images" in " ".join(path_help.split())


def test_versions_are_typed_as_shown_and_counts_must_be_positive(capsys):
    """`models --activate v1` failed ("invalid int value: 'v1'") although every listing shows v1;
    `train --steps 0` ended in a traceback and `queue --n -3` listed 27 rows."""
    import pytest

    parser = build_parser()
    assert parser.parse_args(["models", "p", "--activate", "v3"]).activate == 3
    assert parser.parse_args(["models", "p", "--activate", "3"]).activate == 3
    assert parser.parse_args(["benchmark", "learning-loop", "--warm-share", "0.5"]).warm_share == 0.5
    for argv in (["train", "p", "--steps", "0"], ["queue", "p", "--n", "-3"], ["models", "p", "--activate", "x3"],
                 ["benchmark", "learning-loop", "--warm-share", "0"]):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
        assert "error:" in capsys.readouterr().err


def test_json_output_has_null_where_a_figure_could_not_be_measured(capsys):
    """`evaluate --json` printed NaN, which JSON parsers other than Python's refuse."""
    import json
    import math

    import numpy as np

    from medlabeler.cli import _print_json

    _print_json({"dice": math.nan, "n": np.int64(0), "per_label": [np.float32(0.5), math.inf]})
    assert json.loads(capsys.readouterr().out) == {"dice": None, "n": 0, "per_label": [0.5, None]}


def test_a_reader_that_stops_early_gets_no_error_line(tmp_path):
    """`medlabeler status P | head` ended with "error: [Errno 32] Broken pipe" (a trial); a broken
    pipe that is not standard output's is still said."""
    import subprocess

    script = tmp_path / "long_listing.py"
    script.write_text(
        "import sys\nimport medlabeler.cli as cli\n"
        "def listing(_args):\n"
        "    if sys.argv[1] == 'other':\n        raise BrokenPipeError(32, 'Broken pipe')\n"
        "    for k in range(200_000):\n        print(f'sample {k}')\n    return 0\n"
        "cli.cmd_status = listing\nsys.exit(cli.main(['status', 'anywhere']))\n")
    for kind, code, said in (("stdout", 1, ""), ("other", 2, "error: [Errno 32] Broken pipe")):
        run = subprocess.run(f"{sys.executable} {script} {kind} | head -1; echo rc=${{PIPESTATUS[0]}} >&2",
                             shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=120)
        assert run.stderr.strip().splitlines() == ([said] if said else []) + [f"rc={code}"], (kind, run.stderr)
