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
                 "evaluate", "models", "score", "queue", "benchmark", "demo", "app"):
        assert name in commands


def test_missing_project_is_a_clear_error(tmp_path, capsys):
    assert main(["status", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "not a medlabeler project" in err
