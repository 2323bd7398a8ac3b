"""`medlabeler demo --headless`: one round of the app's loop on the real demo brain, with the
recommended pipeline; the slices it suggests start with what `medlabeler queue` puts first."""

from __future__ import annotations

import re

import pytest

from medlabeler.cli import main

pytest.importorskip("nilearn")

TINY = {"features": [4, 8, 16, 32], "image_size": 64}


def test_the_headless_demo_trains_the_recommended_pipeline_and_suggests_the_queue_first(tmp_path, capsys):
    from medlabeler.engine.workflows.demo_loop import prepare_demo, run_headless_round
    from medlabeler.engine.workflows.run_config import recommendation
    from medlabeler.engine.store import Project

    root = prepare_demo(tmp_path / "demo")
    assert main(["queue", str(root), "--n", "3"]) == 0  # no model yet: first picks, no scores (as in the app)
    first_picks = capsys.readouterr().out
    assert first_picks.count("  sample ") == 3 and "score 0" not in first_picks
    assert run_headless_round(root, labels=4, steps=2, config=TINY) == 0
    out, err = capsys.readouterr()
    with Project.open(root) as project:
        rec = recommendation(project)
        active = project.active_model()
    assert f"training the recommended pipeline: {rec.method} (2 steps)" in out
    progress = [line for line in err.splitlines() if line.startswith(f"train {rec.method}: ")]
    assert any("step 2/2" in line for line in progress), progress
    assert not any("epoch" in line for line in progress), progress
    assert active is not None and active.method == rec.method and active.record["run"]["steps"] == 2
    suggested = [int(n) for n in re.findall(r"^  sample (\d+)", out, flags=re.M)]
    assert len(suggested) == 5
    assert main(["queue", str(root), "--n", "1", "--json"]) == 0
    queue_first = int(re.search(r'"sample": (\d+)', capsys.readouterr().out).group(1))
    assert suggested[0] == queue_first


def test_the_demo_command_makes_its_project_in_the_users_medlabeler_folder(tmp_path, monkeypatch):
    """`medlabeler demo` opened ~/.medlabeler/demo whatever MEDLABELER_HOME said, and the app's
    Open demo the one in MEDLABELER_HOME: two demos, and a tester opened another user's."""
    from medlabeler import cli

    made = []
    monkeypatch.setenv("MEDLABELER_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("medlabeler.engine.workflows.demo_loop.prepare_demo", lambda root, fresh: made.append(root))
    monkeypatch.setattr("medlabeler.engine.workflows.demo_loop.run_headless_round", lambda root, steps: 0)
    assert cli.main(["demo", "--headless"]) == 0
    assert cli.main(["demo", "--headless", "--dir", str(tmp_path / "mine")]) == 0
    assert made == [tmp_path / "home" / "demo", tmp_path / "mine"]
