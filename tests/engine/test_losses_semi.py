"""Semi-supervised losses against plain-loop references: relation consistency, softmax MSE,
soft Dice, FixMatch's masked CE, cross teaching's detached pseudo-labels."""

import math

import pytest
import torch

from medlabeler.engine.semi.cross_teaching import cross_teaching_terms
from medlabeler.engine.semi.dice import SoftDiceLoss, soft_dice_loss
from medlabeler.engine.semi.fixmatch import IGNORE, FixMatchLoss, pseudo_labels
from medlabeler.engine.semi.mean_teacher import SoftmaxMSELoss
from medlabeler.engine.semi.relation_consistency import RelationConsistencyLoss


def softmax_list(values):
    m = max(values)
    e = [math.exp(v - m) for v in values]
    return [v / sum(e) for v in e]


# ------------------------------------------------------------------ relation consistency
def reference_relation(fs, ft):
    b = fs.shape[0]

    def gram_rows_normalised(f):
        g = [[float((f[i] * f[j]).sum()) for j in range(b)] for i in range(b)]
        out = []
        for row in g:
            norm = math.sqrt(sum(v * v for v in row))
            out.append([v / max(norm, 1e-12) for v in row])
        return out

    gs, gt = gram_rows_normalised(fs.double()), gram_rows_normalised(ft.double())
    return sum((gs[i][j] - gt[i][j]) ** 2 for i in range(b) for j in range(b)) / b


@pytest.mark.parametrize("b,d", [(2, 3), (5, 16), (8, 4)])
def test_relation_consistency_matches_loop_reference(b, d):
    g = torch.Generator().manual_seed(b + d)
    fs, ft = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)
    got = float(RelationConsistencyLoss()(fs, ft))
    assert got == pytest.approx(reference_relation(fs, ft), rel=1e-5, abs=1e-7)


def test_relation_consistency_is_zero_for_equal_features_and_teacher_gets_no_gradient():
    f = torch.randn(6, 10)
    assert float(RelationConsistencyLoss()(f, f.clone())) == pytest.approx(0.0, abs=1e-10)
    fs = torch.randn(6, 10, requires_grad=True)
    ft = torch.randn(6, 10, requires_grad=True)
    RelationConsistencyLoss()(fs, ft).backward()
    assert fs.grad.abs().sum() > 0 and ft.grad is None


# ------------------------------------------------------------------ softmax MSE consistency
@pytest.mark.parametrize("shape", [(4, 3), (2, 2, 3, 5)])
def test_softmax_mse_matches_loop_reference(shape):
    g = torch.Generator().manual_seed(len(shape))
    s, t = torch.randn(*shape, generator=g), torch.randn(*shape, generator=g)
    s_moved = s.movedim(1, -1).reshape(-1, shape[1]).tolist()
    t_moved = t.movedim(1, -1).reshape(-1, shape[1]).tolist()
    total, count = 0.0, 0
    for rs, rt in zip(s_moved, t_moved):
        for ps, pt in zip(softmax_list(rs), softmax_list(rt)):
            total += (ps - pt) ** 2
            count += 1
    assert float(SoftmaxMSELoss()(s, t)) == pytest.approx(total / count, rel=1e-5)


# ------------------------------------------------------------------ soft Dice
def reference_dice(logits, target, smooth=1e-5, include_background=True, ignore=None):
    b, c, h, w = logits.shape
    dices = []
    for k in range(0 if include_background else 1, c):
        inter = p_sum = t_sum = 0.0
        for i in range(b):
            for y in range(h):
                for x in range(w):
                    if ignore is not None and int(target[i, y, x]) == ignore:
                        continue
                    p = softmax_list([float(logits[i, j, y, x]) for j in range(c)])[k]
                    t = 1.0 if int(target[i, y, x]) == k else 0.0
                    inter += p * t
                    p_sum += p
                    t_sum += t
        dices.append((2 * inter + smooth) / (p_sum + t_sum + smooth))
    return 1.0 - sum(dices) / len(dices)


@pytest.mark.parametrize("b,c,h,w", [(1, 2, 3, 4), (2, 3, 4, 4), (3, 4, 2, 5)])
@pytest.mark.parametrize("include_background", [True, False])
def test_soft_dice_matches_loop_reference(b, c, h, w, include_background):
    g = torch.Generator().manual_seed(b * c * h * w)
    logits = torch.randn(b, c, h, w, generator=g) * 2
    target = torch.randint(0, c, (b, h, w), generator=g)
    got = float(soft_dice_loss(logits, target, include_background=include_background))
    assert got == pytest.approx(
        reference_dice(logits, target, include_background=include_background), rel=1e-5
    )


def reference_balanced_ce(logits, target, power=1.0):
    """Cross-entropy per pixel, each pixel weighted by (all pixels / pixels of its class) ** power,
    the weights scaled to average 1 over the classes present; a weighted mean."""
    import math

    b, c, h, w = logits.shape
    pixels = [(i, y, x) for i in range(b) for y in range(h) for x in range(w)]
    counts = {k: sum(1 for i, y, x in pixels if int(target[i, y, x]) == k) for k in range(c)}
    raw = {k: (len(pixels) / n) ** power for k, n in counts.items() if n}
    mean = sum(raw.values()) / len(raw)
    total = weights = 0.0
    for i, y, x in pixels:
        k = int(target[i, y, x])
        p = softmax_list([float(logits[i, j, y, x]) for j in range(c)])[k]
        total -= raw[k] / mean * math.log(p)
        weights += raw[k] / mean
    return total / weights


@pytest.mark.parametrize("classes_present", [(0, 1, 2), (0, 2)])
def test_segmentation_supervised_loss_is_half_balanced_ce_plus_foreground_dice(classes_present):
    from medlabeler.engine.semi.supervised import supervised_loss

    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 4, 4, generator=g) * 2
    choice = torch.tensor(classes_present)
    # an unbalanced map: class classes_present[0] on most pixels
    target = choice[(torch.rand(2, 4, 4, generator=g) ** 3 * len(choice)).long().clamp(max=len(choice) - 1)]
    assert len(torch.unique(target)) == len(classes_present)
    expected = 0.5 * (reference_balanced_ce(logits, target) + reference_dice(logits, target, include_background=False))
    assert float(supervised_loss(logits, target, "segmentation")[0]) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("progress", [0.25, 0.5, 1.0])
def test_the_class_balance_fades_into_the_plain_ce_over_a_run(progress):
    from medlabeler.engine.semi.supervised import BALANCE_UNTIL, supervised_loss

    g = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 3, 4, 4, generator=g) * 2
    target = (torch.rand(2, 4, 4, generator=g) ** 3 * 3).long().clamp(max=2)  # class 0 on most pixels
    power = max(0.0, 1.0 - progress / BALANCE_UNTIL)
    dice = reference_dice(logits, target, include_background=False)
    expected = 0.5 * (reference_balanced_ce(logits, target, power) + dice)
    assert float(supervised_loss(logits, target, "segmentation", progress)[0]) == pytest.approx(expected, rel=1e-5)
    if progress >= BALANCE_UNTIL:  # the end of the fade is the plain mean CE
        plain = torch.nn.functional.cross_entropy(logits, target)
        assert expected == pytest.approx(0.5 * (float(plain) + dice), rel=1e-5)


def test_class_weights_favour_the_rare_label_and_ignore_absent_ones():
    from medlabeler.engine.semi.supervised import class_weights

    y = torch.tensor([0] * 96 + [1] * 4)  # 96% and 4% of the pixels; class 2 absent
    w = class_weights(y, 3)
    assert float(w[2]) == 0.0
    assert float(w[1] / w[0]) == pytest.approx(96 / 4, rel=1e-5)
    assert float(w[:2].mean()) == pytest.approx(1.0)
    half = class_weights(y, 3, power=0.5)
    assert float(half[1] / half[0]) == pytest.approx((96 / 4) ** 0.5, rel=1e-5)
    assert class_weights(y, 3, power=0.0).tolist() == [1.0, 1.0, 0.0]


def test_classification_supervised_loss_stays_plain_cross_entropy():
    from medlabeler.engine.semi.supervised import supervised_loss

    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.5]])
    y = torch.tensor([0, 1, 1])
    expected = torch.nn.functional.cross_entropy(logits, y)
    assert float(supervised_loss(logits, y, "classification")[0]) == pytest.approx(float(expected))


def test_soft_dice_perfect_prediction_is_near_zero_and_wrong_is_near_one():
    target = torch.randint(0, 3, (2, 8, 8), generator=torch.Generator().manual_seed(0))
    onehot = torch.nn.functional.one_hot(target, 3).movedim(-1, 1).float()
    assert float(SoftDiceLoss()(onehot * 50, target)) < 1e-3
    assert float(SoftDiceLoss()(onehot.roll(1, dims=1) * 50, target)) > 0.99


# ------------------------------------------------------------------ FixMatch
def test_pseudo_labels_keep_only_confident_predictions():
    probs = torch.tensor([[0.97, 0.03], [0.6, 0.4], [0.02, 0.98], [0.5, 0.5]])
    targets = pseudo_labels(probs.log(), 0.95)
    assert targets.tolist() == [0, IGNORE, 1, IGNORE]
    pixel_logits = torch.zeros(1, 2, 2, 2)
    pixel_logits[0, 1, 0, 0] = 10.0  # only this pixel is confident (class 1)
    assert pseudo_labels(pixel_logits, 0.95).tolist() == [[[1, IGNORE], [IGNORE, IGNORE]]]


def reference_fixmatch(strong_logits, weak_logits, threshold):
    total, count = 0.0, 0
    for s_row, w_row in zip(strong_logits.tolist(), weak_logits.tolist()):
        p_weak = softmax_list(w_row)
        confidence = max(p_weak)
        label = p_weak.index(confidence)
        if confidence >= threshold:
            total += -math.log(softmax_list(s_row)[label])
        count += 1
    return total / count


@pytest.mark.parametrize("n,c,threshold", [(8, 2, 0.95), (12, 4, 0.6), (5, 3, 0.4)])
def test_fixmatch_loss_matches_loop_reference(n, c, threshold):
    g = torch.Generator().manual_seed(n + c)
    weak = torch.randn(n, c, generator=g) * 4
    strong = torch.randn(n, c, generator=g)
    got = float(FixMatchLoss()(strong, pseudo_labels(weak, threshold)))
    assert got == pytest.approx(reference_fixmatch(strong, weak, threshold), rel=1e-5, abs=1e-7)


def reference_fixmatch_dice(strong_logits, weak_logits, threshold):
    """0.5 * (the CE over all pixels + the foreground Dice over the confident pixels), in loops."""
    b, c, h, w = strong_logits.shape
    total, targets = 0.0, torch.full((b, h, w), IGNORE)
    for i in range(b):
        for y in range(h):
            for x in range(w):
                p_weak = softmax_list([float(weak_logits[i, j, y, x]) for j in range(c)])
                if max(p_weak) >= threshold:
                    label = p_weak.index(max(p_weak))
                    targets[i, y, x] = label
                    total += -math.log(softmax_list([float(strong_logits[i, j, y, x]) for j in range(c)])[label])
    dice = reference_dice(strong_logits, targets, include_background=False, ignore=IGNORE)
    return 0.5 * (total / (b * h * w) + dice)


@pytest.mark.parametrize("b,c,threshold", [(2, 3, 0.8), (1, 4, 0.5), (3, 2, 0.95)])
def test_fixmatch_loss_with_dice_matches_loop_reference(b, c, threshold):
    g = torch.Generator().manual_seed(b * c)
    weak = torch.randn(b, c, 5, 4, generator=g) * 4
    strong = torch.randn(b, c, 5, 4, generator=g)
    got = float(FixMatchLoss(dice=True)(strong, pseudo_labels(weak, threshold)))
    assert got == pytest.approx(reference_fixmatch_dice(strong, weak, threshold), rel=1e-5)


@pytest.mark.parametrize("b,c,h,w", [(1, 3, 3, 4), (2, 4, 4, 4)])
def test_soft_dice_leaves_ignored_pixels_out(b, c, h, w):
    g = torch.Generator().manual_seed(b + c + h)
    logits = torch.randn(b, c, h, w, generator=g) * 2
    target = torch.randint(-1, c, (b, h, w), generator=g)
    got = float(soft_dice_loss(logits, target, include_background=False, ignore_index=-1))
    assert got == pytest.approx(reference_dice(logits, target, include_background=False, ignore=-1), rel=1e-5)
    # an ignored pixel's prediction cannot move the loss
    moved = logits.clone()
    moved[target.unsqueeze(1).expand_as(moved) == -1] = 9.0
    assert float(soft_dice_loss(moved, target, include_background=False, ignore_index=-1)) == pytest.approx(got)


# ------------------------------------------------------------------ cross teaching
def test_cross_teaching_pseudo_labels_carry_no_gradient_to_the_teacher():
    torch.manual_seed(0)
    net_a = torch.nn.Conv2d(1, 3, 3, padding=1)
    net_b = torch.nn.Conv2d(1, 3, 1)
    x = torch.randn(2, 1, 6, 6)
    loss_a, loss_b = cross_teaching_terms(net_a(x), net_b(x))
    loss_a.backward()
    assert net_a.weight.grad.abs().sum() > 0
    assert net_b.weight.grad is None  # b only taught, through a detached argmax
    target_b = net_b(x).argmax(dim=1)
    assert float(loss_a) == pytest.approx(float(soft_dice_loss(net_a(x), target_b)), rel=1e-6)
