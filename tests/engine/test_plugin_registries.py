"""The registries plugins extend: listing by kind without imports, and the CLI's choices."""

from importlib.metadata import EntryPoint

import pytest

from medlabeler.cli import build_parser
from medlabeler.engine import methods


def test_built_in_kinds_listed_without_loading_match_the_classes():
    for kind in ("pretrain", "train"):
        for name in methods.list_methods(kind=kind):
            assert methods.method_class(name).kind == kind, name
    assert set(methods.list_methods(kind="pretrain")) | set(methods.list_methods(kind="train")) >= set(methods._BUILTIN)


def test_cli_method_choices_come_from_the_registry(monkeypatch):
    plugin = EntryPoint(name="echo", value="tests.engine.test_methods_registry:EchoMethod", group=methods.ENTRY_POINT_GROUP)
    monkeypatch.setattr(methods, "entry_points", lambda group: [plugin] if group == methods.ENTRY_POINT_GROUP else [])
    args = build_parser().parse_args(["train", "p", "--method", "echo"])
    assert args.method == "echo"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "p", "--method", "simclr"])  # a pretraining method
    assert build_parser().parse_args(["pretrain", "p", "--method", "curriculum"]).method == "curriculum"


def test_cli_strategy_choices_come_from_the_registry(monkeypatch):
    from medlabeler.engine.active import strategies

    monkeypatch.setattr(strategies, "_PLUGINS", {"my-strategy": lambda **kw: []})
    assert build_parser().parse_args(["queue", "p", "--strategy", "my-strategy"]).strategy == "my-strategy"
    assert build_parser().parse_args(["queue", "p", "--strategy", "entropy"]).strategy == "entropy"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["queue", "p", "--strategy", "nonsense"])
