"""Curricular SSL spec: plateau rule, epoch caps, augmentation ramp, stage validation."""

import math

import pytest

from medlabeler.engine.methods import list_methods, method_info
from medlabeler.engine.ssl.curriculum import (
    Curriculum,
    CurriculumStage,
    augment_strength_ramp,
    default_curriculum,
    stage_should_end,
)


def test_plateau_rule_needs_one_percent_over_three_epochs():
    assert not stage_should_end([1.0, 0.9, 0.8])  # too few epochs to judge
    assert not stage_should_end([1.0, 0.9, 0.8, 0.7])  # still improving fast
    assert stage_should_end([1.0, 0.9, 0.8, 0.799, 0.798, 0.797])  # < 1 % over 3 epochs
    assert not stage_should_end([1.0, 0.9, 0.8, 0.799, 0.798, 0.79])  # exactly 1.25 %
    assert stage_should_end([1.0, 1.1, 1.2, 1.3])  # getting worse is a plateau too
    assert stage_should_end([5.0, 4.0, 4.0, 4.0, 4.0], patience=3, min_rel_improvement=0.001)
    assert not stage_should_end([5.0, 4.0, 4.0, 4.0, 4.0], patience=4)  # 5 -> 4 is inside the window


def test_plateau_rule_with_negative_losses_uses_magnitude():
    assert not stage_should_end([-1.0, -1.5, -2.0, -2.5])
    assert stage_should_end([-1.0, -1.001, -1.002, -1.003])


def test_epoch_cap_ends_a_stage_even_while_improving():
    losses = [10.0 / (i + 1) for i in range(5)]
    assert not stage_should_end(losses, max_epochs=6)
    assert stage_should_end(losses, max_epochs=5)


def test_divergence_is_an_error():
    with pytest.raises(ValueError, match="NaN"):
        stage_should_end([1.0, math.nan])


def test_augmentation_strength_ramps_within_a_stage():
    assert augment_strength_ramp(0, 5, 0.2, 1.0) == pytest.approx(0.2)
    assert augment_strength_ramp(2, 5, 0.2, 1.0) == pytest.approx(0.6)
    assert augment_strength_ramp(4, 5, 0.2, 1.0) == pytest.approx(1.0)
    assert augment_strength_ramp(9, 5, 0.2, 1.0) == pytest.approx(1.0)
    stage = CurriculumStage("s", "simclr", max_epochs=10, ramp_epochs=3, augment_start=0.0)
    assert [stage.augment_strength(e) for e in range(4)] == pytest.approx([0.0, 0.5, 1.0, 1.0])


def test_stages_validate_their_fields():
    with pytest.raises(ValueError, match="pool"):
        CurriculumStage("s", "simclr", pool="internet")
    with pytest.raises(ValueError, match="source"):
        CurriculumStage("s", "simclr", pool="generic")
    with pytest.raises(ValueError, match="unique"):
        Curriculum((CurriculumStage("a", "simclr"), CurriculumStage("a", "pcl")))


def test_default_curriculum_orders_pools_and_checks_against_the_registry():
    kinds = {name: method_info(name)["kind"] for name in list_methods()}
    plan = default_curriculum("simclr", generic_source="/data/chest-xrays")
    assert [s.pool for s in plan.stages] == ["generic", "all", "labeled"]
    plan.validate(kinds)
    assert [s.name for s in default_curriculum(finetune_method=None).stages] == ["project"]
    wrong = Curriculum(
        (CurriculumStage("ft", "supervised", pool="labeled"), CurriculumStage("ssl", "simclr"))
    )
    with pytest.raises(ValueError, match="cannot follow"):
        wrong.validate(kinds)
    with pytest.raises(ValueError, match="unknown method"):
        Curriculum((CurriculumStage("x", "byol"),)).validate(kinds)
