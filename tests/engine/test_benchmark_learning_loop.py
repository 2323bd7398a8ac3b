"""The learning-loop benchmark runs the simulated clinician with the loop on the demo (tiny settings)."""

import json
import re

from medlabeler.cli import main


def test_learning_loop_benchmark_prints_the_curve_latency_and_decisions(tmp_path, capsys):
    out = tmp_path / "loop"
    code = main(["benchmark", "learning-loop", "--rounds", "2", "--per-round", "3", "--steps", "4",
                 "--image-size", "32", "--config", json.dumps({"features": [4, 8, 16]}), "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "medlabeler benchmark learning-loop --dataset mni-tissue-seg --rounds 2 --per-round 3" in printed
    rows = re.findall(r"^\| (\d+) \| (\d+) \| v(\d+) \| ([0-9.]+) \| ([0-9.]+) \| (.+) \|$", printed, re.M)
    assert [(r[0], r[1]) for r in rows] == [("1", "3"), ("2", "6")]
    assert re.search(r"promoted v\d+: the first model", rows[0][5])  # v1 may be a pretrained encoder
    assert "label save -> promoted model that includes it: p50" in printed
    assert "vs a single manual Retrain from scratch with the same 6 labels" in printed
    assert (out / "learning-loop.md").read_text().startswith("# Learning loop with a simulated clinician")


def test_after_the_last_round_the_clinician_rests_and_the_loop_trains_a_full_run(tmp_path, capsys, monkeypatch):
    from medlabeler.engine.workflows import learn_loop

    monkeypatch.setattr(learn_loop, "WARM_START_MIN_STEPS", 1)  # tiny rounds: half of 6 steps shows
    out = tmp_path / "loop"
    code = main(["benchmark", "learning-loop", "--rounds", "2", "--per-round", "3", "--steps", "6",
                 "--warm-share", "0.5", "--full-run-after-s", "2", "--seed", "1", "--image-size", "32",
                 "--config", json.dumps({"features": [4, 8, 16]}), "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    rows = re.findall(r"^\| (\d+|rest) \| (\d+) \| v(\d+) \| ([0-9.]+) \| ([0-9.]+) \| (.+) \|$", printed, re.M)
    assert [(r[0], r[1]) for r in rows] == [("1", "3"), ("2", "6"), ("rest", "6")]
    assert re.search(r"after the rest \([0-9.]+ after the last round\) vs a single manual Retrain", printed)
    assert "--warm-share 0.5 --full-run-after-s 2.0 --seed 1" in printed  # the command that reproduces it
