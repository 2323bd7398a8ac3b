"""The README tells a user the truth: every command, option and option value its command lines
show exists in the CLI, and its Keys table lists the keys the Label tab shows. (A review had found
`pretrain --method` shown as required, a key missing from the table, and an option the code
accepted and ignored; positional arguments and which options are required are not checked.)"""

import argparse
import re
import shlex
from pathlib import Path

import pytest

from medlabeler.cli import build_parser

README = Path(__file__).resolve().parents[2] / "README.md"
#: What the README's "Write your own plugin" examples register (plugins/medlabeler-*)
EXAMPLE_PLUGINS = ("diverse-margin", "cross-pseudo-supervision")


def _code_lines() -> list[str]:
    """The lines inside the README's fenced code blocks, comments cut, continuations joined."""
    lines, inside, held = [], False, ""
    for raw in README.read_text(encoding="utf-8").splitlines():
        if raw.startswith("```"):
            inside = not inside
            continue
        if not inside:
            continue
        line = held + raw.split("  #")[0].split(" # ")[0].rstrip()
        if line.endswith("\\"):
            held = line[:-1] + " "
            continue
        held = ""
        lines.append(line.strip())
    return lines


def _medlabeler_calls() -> list[list[str]]:
    """The words after `medlabeler` (or `-m medlabeler`) of each README command line."""
    calls = []
    for line in _code_lines():
        words = shlex.split(line.replace("|", " "))  # a|b means either: keep both words
        for i, word in enumerate(words):
            if word == "medlabeler" and (i == 0 or words[i - 1] in ("-m", ".venv/bin/medlabeler")):
                calls.append(words[i + 1:])
                break
            if word.endswith("/medlabeler") and i == 0:
                calls.append(words[1:])
                break
    return calls


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def test_the_readme_shows_commands_at_all():
    names = {call[0] for call in _medlabeler_calls() if call}
    assert {"init", "train", "learn", "queue", "export", "benchmark", "app"} <= names, names


@pytest.mark.parametrize("call", _medlabeler_calls(), ids=lambda call: " ".join(call[:2]))
def test_every_readme_command_and_option_exists(call):
    parser = build_parser()
    for word in call:
        sub = _subparsers(parser)
        if not sub or word.startswith("-") or word not in sub:
            break
        parser = sub[word]
    else:
        return
    assert not _subparsers(parser) or call[-1] in _subparsers(parser), f"{' '.join(call)}: no such command"
    actions = {option: action for action in parser._actions for option in action.option_strings}
    for i, word in enumerate(call):
        option = re.match(r"\[?(--?[a-z][a-z0-9-]*)", word)
        if not option:
            continue
        action = actions.get(option.group(1))
        assert action is not None, f"medlabeler {' '.join(call)}: {option.group(1)} is not an option of it"
        if action.choices is None or word.endswith("]"):
            continue
        for value in call[i + 1:]:  # `--method a|b|c`: each of a, b, c
            if value.startswith(("-", "[")):
                break
            value = value.rstrip("]")
            if value in EXAMPLE_PLUGINS and value not in action.choices:
                pytest.skip(f"{value} comes from an example plugin (plugins/; installer/setup.sh test installs it)")
            assert value in action.choices, f"medlabeler {' '.join(call)}: {option.group(1)} takes no {value!r}"


def test_the_keys_table_lists_every_key_the_label_tab_shows():
    from medlabeler.ui.keys import CLASSIFICATION_KEYS, SEGMENTATION_KEYS

    text = README.read_text(encoding="utf-8")
    table = text[text.index("### Keys"):].split("\n\n")[1]
    first_cells = " ".join(row.split("|")[1] for row in table.splitlines() if row.startswith("|"))
    documented = set(re.findall(r"`([^`]+)`", first_cells))
    for key, _what in SEGMENTATION_KEYS + CLASSIFICATION_KEYS:
        spelled = {"1-9": "1`-`9", "[ ]": "["}.get(key, key)
        parts = spelled.split("`-`") if "`-`" in spelled else [spelled]
        assert all(part in documented for part in parts), f"key {key!r} is missing from the README's Keys table"


def test_an_option_a_command_ignores_is_not_offered():
    """`score --strategy` was accepted and ignored: scoring stores every measure."""
    commands = _subparsers(build_parser())
    assert "--strategy" not in _options(commands["score"])
    assert "--strategy" in _options(commands["queue"])
