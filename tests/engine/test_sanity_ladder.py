"""The sanity ladder of issue 9, small: each self- or semi-supervised part must behave before any
tuning (medlabeler.benchmarks.ladder; `medlabeler benchmark sanity-ladder` runs it at full size)."""

import pytest

from medlabeler.benchmarks.ladder import run_ladder

SMALL = {"image_size": 32, "features": [8, 16, 32], "batch_size": 8, "unlabeled_batch_size": 8}


@pytest.fixture(scope="module")
def ladder(tmp_path_factory):
    lines = []
    # 80 steps at 32 px: one pair of supervised seeds underestimates the spread here (measured 0.02-0.04
    # apart), so the small ladder allows 0.05; the full-size ladder (docs/benchmarks.md) uses 2 x spread
    rungs = run_ladder(tmp_path_factory.mktemp("ladder"), labels=8, steps=80, pretrain_steps=80, config=SMALL,
                       tolerance=0.05, echo=lines.append)
    by_number: dict[str, list] = {}
    for r in rungs:
        by_number.setdefault(r.name.split(" ")[0], []).append(r)
    return by_number, lines


@pytest.mark.parametrize("rung", ["supervised", "1a", "1b", "2a", "2b", "3b", "3c", "4", "5"])
def test_rung_passes(ladder, rung):
    rungs, lines = ladder
    matching = rungs.get(rung, [])
    assert matching, f"rung {rung} missing; ran: {lines}"
    assert all(r.passed for r in matching), "\n".join(lines)


@pytest.mark.xfail(reason="known bug, not fixed (docs/benchmarks.md, 'Small ladder'): at 32 px and 80 steps, "
                          "fine-tuning from a PCL encoder scores 0.054 / 0.062 (seeds 0 / 1) below random init on the "
                          "2026-12-04 machine and 0.049 on the previous one, at the edge of the 0.05 tolerance; the "
                          "full-size ladder passes (-0.004), and PCL stays marked experimental")
def test_rung_3a_fine_tuning_from_pcl_is_not_below_random_init(ladder):
    rungs, lines = ladder
    assert rungs.get("3a") and all(r.passed for r in rungs["3a"]), "\n".join(lines)


def test_fine_tuning_from_pcl_learns_every_label(ladder):
    """Whatever 3a's margin, a network fine-tuned from the encoder must learn every label (a
    collapse to the largest one was the failure of issue 9)."""
    rungs, lines = ladder
    figures = rungs["3a"][0].figures
    assert min(figures["dice_grey_matter"], figures["dice_white_matter"]) > 0.5, "\n".join(lines)


def test_fixmatch_logs_pass_shares_and_pseudo_label_accuracy_per_class(ladder):
    rungs, _ = ladder
    figures = rungs["2b"][0].figures
    assert {"logged_mask_rate", "logged_pass_0", "logged_pass_1", "logged_pass_2"} <= set(figures)
    assert {"pseudo_acc", "pseudo_acc_0", "pseudo_acc_1", "pseudo_acc_2"} <= set(figures)
    assert rungs["2a"][0].figures["max_pass_share"] == 0.0
