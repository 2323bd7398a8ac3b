"""Metrics against hand-computed cases, including classes/labels missing from a split."""

import math

import numpy as np
import pytest

from medlabeler.engine.metrics import (
    SegmentationScores, average_ranks, binary_auc, classification_metrics, dice_iou, hd95,
    segmentation_case_metrics, segmentation_metrics,
)


def test_binary_auc_by_hand():
    # positives 0.8, 0.4; negatives 0.5, 0.1: pairs (0.8>0.5, 0.8>0.1, 0.4<0.5, 0.4>0.1) -> 3/4
    assert binary_auc([1, 0, 1, 0], [0.8, 0.5, 0.4, 0.1]) == pytest.approx(0.75)
    # a tie between a positive and a negative counts one half
    assert binary_auc([1, 0], [0.3, 0.3]) == pytest.approx(0.5)
    assert math.isnan(binary_auc([1, 1], [0.2, 0.9]))
    assert average_ranks([3.0, 1.0, 3.0]).tolist() == [2.5, 1.0, 2.5]


def test_classification_by_hand():
    y = [0, 0, 1, 1, 2, 2]
    probs = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1],
                      [0.1, 0.8, 0.1], [0.1, 0.2, 0.7], [0.5, 0.2, 0.3]])
    m = classification_metrics(y, probs, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["recall_a"] == pytest.approx(0.5) and m["recall_b"] == 1.0 and m["recall_c"] == pytest.approx(0.5)
    assert m["balanced_accuracy"] == pytest.approx(2 / 3)
    # one-vs-rest AUCs by hand: class a: pos {0.8,0.3} vs neg {0.2,0.1,0.1,0.5} -> 7/8;
    # class b: pos {0.7,0.8} vs neg {0.1,0.6,0.2,0.2} -> 1; class c: pos {0.7,0.3} vs all 0.1 -> 1
    assert m["auc"] == pytest.approx((7 / 8 + 1 + 1) / 3)
    assert m["n"] == 6


def test_classification_matches_scikit_learn():
    from sklearn.metrics import balanced_accuracy_score, recall_score, roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    probs = rng.dirichlet(np.ones(4), 200)
    probs[np.arange(200), y] += rng.random(200)
    probs /= probs.sum(1, keepdims=True)
    m = classification_metrics(y, probs)
    assert m["auc"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, probs.argmax(1)))
    recalls = recall_score(y, probs.argmax(1), average=None)
    assert [m[f"recall_{c}"] for c in range(4)] == pytest.approx(list(recalls))
    binary = classification_metrics(y % 2, np.stack([1 - probs[:, 1], probs[:, 1]], 1))
    assert binary["auc"] == pytest.approx(roc_auc_score(y % 2, probs[:, 1]))


def test_class_missing_from_split_is_robust():
    probs = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.3, 0.6, 0.1]])
    m = classification_metrics([0, 1, 0], probs, ["a", "b", "c"])
    assert math.isnan(m["recall_c"])
    assert m["balanced_accuracy"] == pytest.approx(0.75)  # mean of recall a (1/2) and b (1); c absent
    assert math.isfinite(m["auc"])  # from the classes present with positives and negatives
    single = classification_metrics([1, 1], np.array([[0.2, 0.8], [0.6, 0.4]]))
    assert math.isnan(single["auc"]) and single["accuracy"] == 0.5
    empty = classification_metrics([], np.zeros((0, 2)))
    assert empty["n"] == 0 and math.isnan(empty["accuracy"])


def test_dice_iou_by_hand_and_empty_cases():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[0, :3] = True  # 3 pixels
    b[0, 1:] = True  # 3 pixels, 2 shared
    dice, iou = dice_iou(a, b)
    assert dice == pytest.approx(4 / 6) and iou == pytest.approx(2 / 4)
    assert dice_iou(np.zeros((3, 3)), np.zeros((3, 3))) == (1.0, 1.0)
    assert dice_iou(a, np.zeros_like(a)) == (0.0, 0.0)


def test_hd95_by_hand():
    ref = np.zeros((20, 20), bool)
    ref[5:10, 5:10] = True
    moved = np.roll(ref, 3, axis=1)
    assert hd95(ref, ref) == 0.0
    assert hd95(moved, ref) == pytest.approx(3.0)
    assert hd95(moved, ref, spacing=(1.0, 2.0)) == pytest.approx(6.0)
    assert math.isnan(hd95(ref, np.zeros_like(ref))) and math.isnan(hd95(np.zeros_like(ref), np.zeros_like(ref)))


def test_hd95_matches_monai_on_a_blob():
    import torch
    from monai.metrics import compute_hausdorff_distance

    yy, xx = np.mgrid[:40, :40]
    ref = (yy - 20) ** 2 + (xx - 20) ** 2 < 100
    pred = (yy - 22) ** 2 + (xx - 19) ** 2 < 80
    to = lambda m: torch.from_numpy(np.stack([~m, m]))[None].float()  # noqa: E731
    monai = float(compute_hausdorff_distance(to(pred), to(ref), percentile=95)[0, 0])
    assert hd95(pred, ref) == pytest.approx(monai, abs=0.5)


def test_segmentation_case_and_split_metrics():
    names = ["liver", "tumour"]
    ref = np.zeros((6, 6), int)
    ref[:3, :3] = 1
    pred = ref.copy()
    pred[0, 0] = 0
    case = segmentation_case_metrics(pred, ref, names)
    assert case["liver"]["dice"] == pytest.approx(16 / 17)
    assert case["tumour"] == {"dice": 1.0, "iou": 1.0, "hd95": case["tumour"]["hd95"], "present": 0.0,
                              "in_reference": 0.0}
    assert math.isnan(case["tumour"]["hd95"])
    # a second case where the tumour is missed entirely
    ref2 = np.zeros((6, 6), int)
    ref2[4:, 4:] = 2
    m = segmentation_metrics([pred, np.zeros((6, 6), int)], [ref, ref2], names)
    assert m["dice_liver"] == pytest.approx(16 / 17)  # case 2 holds no liver: not counted
    assert m["dice_tumour"] == 0.0  # only case 2 has tumour, and it was missed
    assert m["dice"] == pytest.approx((16 / 17 + 0.0) / 2)
    assert math.isnan(m["hd95_tumour"]) and m["n"] == 2
    assert (m["scored_liver"], m["in_reference_liver"], m["scored_tumour"], m["in_reference_tumour"]) == (1, 1, 1, 1)
    # a label never present anywhere scores 1 (nothing to find, nothing found), and is left out of
    # the headline: a tumour nobody labeled or found does not lift the liver's 16/17
    never = segmentation_metrics([pred], [ref], ["liver", "tumour"])
    assert never["dice_tumour"] == 1.0 and never["scored_tumour"] == 0
    assert never["dice"] == pytest.approx(16 / 17) and never["iou"] == pytest.approx(never["iou_liver"])
    # found by the model only (one stray pixel): the split cannot measure the tumour, so the headline
    # stays the liver's; the tumour's own figure says what it stands on
    stray = pred.copy()
    stray[5, 5] = 2
    m = segmentation_metrics([stray], [ref], names)
    assert m["dice"] == pytest.approx(16 / 17) and m["dice_tumour"] == 0.0
    assert (m["scored_tumour"], m["in_reference_tumour"]) == (1, 0)
    # no reference holds any label: the model's finds are all wrong (0), and none found is right (1)
    empty = np.zeros((6, 6), int)
    assert segmentation_metrics([stray], [empty], names)["dice"] == 0.0
    assert segmentation_metrics([empty], [empty], names)["dice"] == 1.0
    assert math.isnan(SegmentationScores(names).result()["dice"])
    with pytest.raises(ValueError, match="differ in shape"):
        segmentation_case_metrics(np.zeros((2, 2)), np.zeros((3, 3)), names)


def test_evaluate_says_what_a_labels_dice_stands_on():
    """A clinician saw "test: dice 0.000" alone: the only test label was a slice without brain, on
    which the model found a little. Each label's line now says how many labels hold it."""
    from medlabeler.cli import _label_lines

    names = ["brain", "lesion"]
    empty = np.zeros((8, 8), int)
    found = empty.copy()
    found[2:4, 2:4] = 1  # the model finds a little brain where the label has none
    lines = _label_lines(segmentation_metrics([found], [empty], names), "test")
    assert lines[0].startswith("  brain: dice 0.000: no test label holds brain")
    assert "the 1 sample where the model finds some" in lines[0]
    assert lines[1] == "  lesion: in no test label and found by the model in none (left out of the mean dice)"
    brain = empty.copy()
    brain[1:5, 1:5] = 1
    lines = _label_lines(segmentation_metrics([brain, found], [brain, empty], names), "validation")
    assert lines[0] == "  brain: dice 0.500 over 2 samples (1 with brain in the label, 1 where only the model finds it)"
    # a label only the model finds, beside one the labels hold: left out of the headline, and said so
    both = empty.copy()
    both[6:, 6:] = 2
    m = segmentation_metrics([brain + both], [brain], names)
    assert m["dice"] == 1.0
    assert _label_lines(m, "validation")[1].endswith("(left out of the mean dice; label validation samples that show "
                                                     "lesion to measure it)")
