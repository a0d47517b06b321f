"""Preference losses and metrics: against TRL's own DPO step as the oracle, against numbers worked out by
hand, and the invariants (policy == reference gives log 2; gradients point the right way)."""

from __future__ import annotations

import math
import types
from collections import defaultdict
from typing import Any

import pytest
import torch
from trl.trainer.dpo_trainer import DPOTrainer

from lalm.losses.preference import (
    PREFERENCE_LOSSES,
    chosen_nll,
    dpo_sigmoid_loss,
    hinge_loss,
    ipo_loss,
    preference_loss,
    preference_metrics,
    robust_loss,
)

METRIC_NAMES = (
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
)
Logps = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _random_logps(batch: int = 8, seed: int = 0) -> Logps:
    """Summed sequence log-probabilities of a plausible size: policy_chosen, policy_rejected, ref_chosen, ref_rejected."""
    g = torch.Generator().manual_seed(seed)
    a, b, c, d = (-40 + 10 * torch.randn(batch, generator=g, dtype=torch.float64) for _ in range(4))
    return a, b, c, d


def _rows(logps: Logps, rows: slice) -> Logps:
    a, b, c, d = (t[rows] for t in logps)
    return a, b, c, d


class _Accelerator:
    """Single process: gather is the identity."""

    device = torch.device("cpu")

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        return x

    gather_for_metrics = gather


class _Model:
    """Stands in for the fused-LM-head forward: returns the per-token log-probabilities it was given."""

    training = True

    def __init__(self, per_token_logps: torch.Tensor) -> None:
        self.per_token_logps = per_token_logps

    def __call__(self, **_: Any) -> types.SimpleNamespace:
        zeros = torch.zeros_like(self.per_token_logps)
        return types.SimpleNamespace(
            log_probs=self.per_token_logps, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool()
        )


def _trl_dpo_step(
    loss_type: str,
    beta: float,
    label_smoothing: float,
    logps: Logps,
    lengths: tuple[torch.Tensor, torch.Tensor],
) -> tuple[torch.Tensor, dict[str, list[float]]]:
    """Run TRL 1.16's DPOTrainer._compute_loss unbound, on a stand-in carrying only what it reads.

    logps: four (B,) summed log-probabilities; lengths: completion tokens of chosen and rejected, (B,)
    each. The stand-in model spreads each sum evenly over its completion tokens (TRL sums them back;
    IPO divides by the count). The reference log-probabilities go in as precomputed, so no reference
    model runs. Returns TRL's loss (the batch mean) and its logged metrics (one batch mean per call).
    """
    policy_chosen, policy_rejected, reference_chosen, reference_rejected = logps
    batch = policy_chosen.shape[0]
    token_counts = torch.cat(lengths)  # rows are [chosen_0..chosen_B-1, rejected_0..rejected_B-1]
    width = int(token_counts.max())
    # completion_mask (2B, 1 + width): one prompt token, then the completion, then padding.
    positions = torch.arange(width).expand(2 * batch, width)
    completion = (positions < token_counts.unsqueeze(1)).long()
    completion_mask = torch.cat([torch.zeros(2 * batch, 1, dtype=torch.long), completion], dim=1)
    per_token = completion * (torch.cat([policy_chosen, policy_rejected]) / token_counts).unsqueeze(1)
    model = _Model(per_token)
    stand_in = types.SimpleNamespace(
        model=model,
        accelerator=_Accelerator(),
        beta=beta,
        label_smoothing=label_smoothing,
        loss_types=[loss_type],
        loss_weights=[1.0],
        precompute_ref_logps=True,
        ld_alpha=None,
        f_divergence_type="reverse_kl",
        use_weighting=False,
        aux_loss_enabled=False,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
    )
    inputs = {
        "input_ids": torch.zeros_like(completion_mask),
        "attention_mask": torch.ones_like(completion_mask),
        "completion_mask": completion_mask,
        "ref_chosen_logps": reference_chosen,
        "ref_rejected_logps": reference_rejected,
    }
    # The stand-in is not a DPOTrainer: that is the point (no model, optimizer or dataset is built).
    loss = DPOTrainer._compute_loss(stand_in, model, inputs, return_outputs=False)  # type: ignore[arg-type]
    return loss, stand_in._metrics["train"]


def _trl_per_example(
    loss_type: str,
    beta: float,
    label_smoothing: float,
    logps: Logps,
    lengths: tuple[torch.Tensor, torch.Tensor],
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """TRL's loss and metrics for each example alone (B calls with B = 1): (B,) and {name: (B,)}."""
    losses, metrics = [], defaultdict(list)
    for i in range(logps[0].shape[0]):
        one = _rows(logps, slice(i, i + 1))
        loss, logged = _trl_dpo_step(
            loss_type, beta, label_smoothing, one, (lengths[0][i : i + 1], lengths[1][i : i + 1])
        )
        losses.append(loss)
        for name in METRIC_NAMES:
            metrics[name].extend(logged[name])
    return torch.stack(losses), {
        name: torch.tensor(values, dtype=torch.float64) for name, values in metrics.items()
    }


def _random_lengths(batch: int = 8, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 7, (batch,), generator=g), torch.randint(1, 7, (batch,), generator=g)


# --- TRL as the oracle -------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.1, 0.5])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_sigmoid_matches_trl(beta: float, label_smoothing: float) -> None:
    logps, lengths = _random_logps(), _random_lengths()
    # TRL 1.16's "sigmoid" ignores label_smoothing; its cDPO formula -(1-ε) log σ(βh) - ε log σ(-βh) lives
    # in "aot", whose batch sort is the identity for a single example, where its delta is h.
    trl_type = "sigmoid" if label_smoothing == 0.0 else "aot"
    expected, _ = _trl_per_example(trl_type, beta, label_smoothing, logps, lengths)
    ours = dpo_sigmoid_loss(*logps, beta=beta, label_smoothing=label_smoothing)
    torch.testing.assert_close(ours, expected)
    margin = (logps[0] - logps[2]) - (logps[1] - logps[3])
    assert (margin > 0).any() and (margin < 0).any()  # pairs ranked both ways


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_hinge_matches_trl(beta: float) -> None:
    logps, lengths = _random_logps(seed=2), _random_lengths(seed=3)
    expected, _ = _trl_per_example("hinge", beta, 0.0, logps, lengths)
    ours = hinge_loss(*logps, beta=beta)
    torch.testing.assert_close(ours, expected)
    assert (ours == 0).any() and (ours > 1).any()  # both sides of the hinge


@pytest.mark.parametrize("beta", [0.1, 0.5])
@pytest.mark.parametrize("label_smoothing", [0.1, 0.3])
def test_robust_matches_trl(beta: float, label_smoothing: float) -> None:
    logps, lengths = _random_logps(seed=12), _random_lengths(seed=13)
    expected, _ = _trl_per_example("robust", beta, label_smoothing, logps, lengths)
    ours = robust_loss(*logps, beta=beta, label_smoothing=label_smoothing)
    torch.testing.assert_close(ours, expected)
    margin = (logps[0] - logps[2]) - (logps[1] - logps[3])
    assert (margin > 0).any() and (margin < 0).any()  # pairs ranked both ways
    assert (ours < 0).any()  # and some far enough apart for the loss to go below 0


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_ipo_matches_trl_fed_length_averaged_logps(beta: float) -> None:
    """TRL's IPO divides each log-ratio by its completion length; ipo_loss takes the log-probabilities it
    is given, so it is fed the same means."""
    logps, lengths = _random_logps(seed=4), _random_lengths(seed=5)
    expected, _ = _trl_per_example("ipo", beta, 0.0, logps, lengths)
    chosen_len, rejected_len = (n.double() for n in lengths)
    policy_chosen, policy_rejected, reference_chosen, reference_rejected = logps
    ours = ipo_loss(
        policy_chosen / chosen_len,
        policy_rejected / rejected_len,
        reference_chosen / chosen_len,
        reference_rejected / rejected_len,
        beta=beta,
    )
    torch.testing.assert_close(ours, expected)
    assert not torch.allclose(ipo_loss(*logps, beta=beta), expected)  # the lengths did matter


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_metrics_match_trl(beta: float) -> None:
    logps, lengths = _random_logps(seed=6), _random_lengths(seed=7)
    _, expected = _trl_per_example("sigmoid", beta, 0.0, logps, lengths)
    ours = preference_metrics(*logps, beta=beta)
    assert set(ours) == set(METRIC_NAMES)
    for name in METRIC_NAMES:
        # TRL's accuracies are float32 like ours; the logged Python floats come back here as float64.
        torch.testing.assert_close(ours[name], expected[name], check_dtype=False, msg=name)
    assert 0 < ours["rewards/accuracies"].mean() < 1


@pytest.mark.parametrize(
    "name, options", [("sigmoid", {}), ("ipo", {}), ("hinge", {}), ("robust", {"label_smoothing": 0.2})]
)
def test_trl_batch_loss_is_the_mean_of_our_per_example_losses(name: str, options: dict[str, float]) -> None:
    logps = _random_logps(seed=8)
    ones = (torch.ones(8, dtype=torch.long), torch.ones(8, dtype=torch.long))  # one token: IPO means == sums
    trl_loss, logged = _trl_dpo_step(name, 0.1, options.get("label_smoothing", 0.0), logps, ones)
    ours = preference_loss(name, *logps, beta=0.1, **options)
    assert ours.shape == (8,)
    torch.testing.assert_close(ours.mean(), trl_loss)
    assert logged["rewards/margins"][0] == pytest.approx(
        preference_metrics(*logps, beta=0.1)["rewards/margins"].mean().item()
    )


# --- numbers worked out by hand ------------------------------------------------------------------


def _equal(value: float = -12.5, batch: int = 3) -> Logps:
    a, b, c, d = (torch.full((batch,), value, dtype=torch.float64) for _ in range(4))
    return a, b, c, d


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_all_four_equal(beta: float) -> None:
    logps = _equal()
    for smoothing in (0.0, 0.2):
        loss = dpo_sigmoid_loss(*logps, beta=beta, label_smoothing=smoothing)
        assert loss.tolist() == pytest.approx([math.log(2)] * 3, abs=1e-12)
    assert ipo_loss(*logps, beta=beta).tolist() == pytest.approx([(1 / (2 * beta)) ** 2] * 3)
    assert hinge_loss(*logps, beta=beta).tolist() == [1.0] * 3
    for smoothing in (0.1, 0.4):
        # ((1-ε) log 2 - ε log 2) / (1-2ε) = log 2
        loss = robust_loss(*logps, beta=beta, label_smoothing=smoothing)
        assert loss.tolist() == pytest.approx([math.log(2)] * 3, abs=1e-12)


# policy chosen -10, rejected -14; reference chosen -11, rejected -13: h = (+1) - (-1) = 2.
HAND = tuple(torch.tensor([value], dtype=torch.float64) for value in (-10.0, -14.0, -11.0, -13.0))


def test_sigmoid_by_hand() -> None:
    # beta 0.5: beta * h = 1, and -log sigmoid(x) = log(1 + e^-x).
    assert dpo_sigmoid_loss(*HAND, beta=0.5).item() == pytest.approx(math.log1p(math.exp(-1)))
    cdpo = 0.8 * math.log1p(math.exp(-1)) + 0.2 * math.log1p(math.exp(1))
    assert dpo_sigmoid_loss(*HAND, beta=0.5, label_smoothing=0.2).item() == pytest.approx(cdpo)


def test_robust_by_hand() -> None:
    # beta 0.5: beta * h = 1; -log sigmoid(1) = log(1 + e^-1) = 0.3133, -log sigmoid(-1) = log(1 + e) = 1.3133.
    right, wrong = math.log1p(math.exp(-1)), math.log1p(math.exp(1))
    # epsilon 0.2: (0.8 * 0.3133 - 0.2 * 1.3133) / 0.6 = -0.0201, below 0 though the pair is not ranked
    # far apart: the estimate subtracts the loss of the swapped pair.
    assert robust_loss(*HAND, beta=0.5, label_smoothing=0.2).item() == pytest.approx(
        (0.8 * right - 0.2 * wrong) / 0.6
    )
    assert robust_loss(*HAND, beta=0.5, label_smoothing=0.2).item() == pytest.approx(-0.020072, abs=1e-6)
    flipped = (HAND[1], HAND[0], HAND[3], HAND[2])  # h = -2: (0.8 * 1.3133 - 0.2 * 0.3133) / 0.6 = 1.6466
    assert robust_loss(*flipped, beta=0.5, label_smoothing=0.2).item() == pytest.approx(
        (0.8 * wrong - 0.2 * right) / 0.6
    )
    # epsilon 0.1, beta 0.1: beta * h = 0.2.
    right, wrong = math.log1p(math.exp(-0.2)), math.log1p(math.exp(0.2))
    assert robust_loss(*HAND, beta=0.1, label_smoothing=0.1).item() == pytest.approx(
        (0.9 * right - 0.1 * wrong) / 0.8
    )


def test_ipo_by_hand() -> None:
    assert ipo_loss(*HAND, beta=0.1).item() == pytest.approx((2 - 1 / 0.2) ** 2)  # (2 - 5)^2 = 9
    assert ipo_loss(*HAND, beta=0.25).item() == pytest.approx(0.0)  # h already at its target 1/(2 beta)


def test_chosen_nll_by_hand() -> None:
    # chosen log-probs -10 over 4 tokens and -3 over 1 token; a row without tokens counts as one.
    nll = chosen_nll(torch.tensor([-10.0, -3.0, 0.0]), torch.tensor([4, 1, 0]))
    assert nll.tolist() == pytest.approx([2.5, 3.0, 0.0])
    with pytest.raises(ValueError, match="differ"):
        chosen_nll(torch.tensor([-1.0, -2.0]), torch.tensor([1]))


def test_hinge_by_hand() -> None:
    assert hinge_loss(*HAND, beta=0.1).item() == pytest.approx(1 - 0.1 * 2)  # 0.8
    assert hinge_loss(*HAND, beta=0.5).item() == 0.0  # beta * h = 1: on the hinge
    flipped = (HAND[1], HAND[0], HAND[3], HAND[2])  # swapping chosen and rejected: h = -2
    assert hinge_loss(*flipped, beta=0.5).item() == pytest.approx(2.0)


def test_metrics_by_hand() -> None:
    metrics = preference_metrics(*HAND, beta=0.5)
    assert {name: value.item() for name, value in metrics.items()} == {
        "rewards/chosen": 0.5,  # 0.5 * (-10 - -11)
        "rewards/rejected": -0.5,  # 0.5 * (-14 - -13)
        "rewards/margins": 1.0,
        "rewards/accuracies": 1.0,
        "logps/chosen": -10.0,
        "logps/rejected": -14.0,
    }


# --- invariants --------------------------------------------------------------------------------------


def test_policy_equal_to_reference_gives_log_2_and_zero_rewards() -> None:
    policy_chosen, policy_rejected, _, _ = _random_logps(seed=9)
    logps = (policy_chosen, policy_rejected, policy_chosen.clone(), policy_rejected.clone())
    for beta in (0.1, 0.5):
        loss = dpo_sigmoid_loss(*logps, beta=beta)
        torch.testing.assert_close(loss, torch.full((8,), math.log(2), dtype=torch.float64))
        metrics = preference_metrics(*logps, beta=beta)
        for name in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
            assert torch.all(metrics[name] == 0), name  # a tie is not an accurate pair


@pytest.mark.parametrize("label_smoothing", [0.1, 0.3])
def test_robust_loss_averaged_over_a_label_flip_is_the_dpo_loss(label_smoothing: float) -> None:
    """The point of rDPO: if a label is flipped with probability ε, the expected robust loss is the DPO
    loss of the true label, (1-ε) robust(h) + ε robust(-h) = -log σ(βh)."""
    policy_chosen, policy_rejected, reference_chosen, reference_rejected = _random_logps(seed=14)
    as_labelled = robust_loss(
        policy_chosen, policy_rejected, reference_chosen, reference_rejected, 0.1, label_smoothing
    )
    swapped = robust_loss(
        policy_rejected, policy_chosen, reference_rejected, reference_chosen, 0.1, label_smoothing
    )
    expected = dpo_sigmoid_loss(
        policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta=0.1
    )
    torch.testing.assert_close((1 - label_smoothing) * as_labelled + label_smoothing * swapped, expected)


def test_robust_gradient_never_vanishes() -> None:
    """d/dx of (-(1-ε) log σ(x) + ε log σ(-x)) / (1-2ε) is -((1-ε) σ(-x) + ε σ(x)) / (1-2ε): always below
    -ε/(1-2ε), where cDPO's gradient goes to 0 at large margins."""
    policy_chosen, policy_rejected, reference_chosen, reference_rejected = _random_logps(seed=15)
    policy_chosen.requires_grad_(True)
    beta, eps = 0.5, 0.2
    robust_loss(
        policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta, eps
    ).sum().backward()
    assert policy_chosen.grad is not None
    x = beta * ((policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)).detach()
    expected = -beta * ((1 - eps) * torch.sigmoid(-x) + eps * torch.sigmoid(x)) / (1 - 2 * eps)
    torch.testing.assert_close(policy_chosen.grad, expected)
    assert torch.all(policy_chosen.grad < -beta * eps / (1 - 2 * eps))
    assert x.max() > 8  # a pair so well separated that DPO's gradient, -β σ(-x), is below 1e-3 β


def test_gradients_point_the_right_way() -> None:
    policy_chosen, policy_rejected, reference_chosen, reference_rejected = _random_logps(seed=10)
    policy_chosen.requires_grad_(True)
    policy_rejected.requires_grad_(True)
    beta = 0.5
    loss = dpo_sigmoid_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta=beta)
    loss.sum().backward()
    assert policy_chosen.grad is not None and policy_rejected.grad is not None
    assert torch.all(policy_chosen.grad < 0) and torch.all(policy_rejected.grad > 0)
    # d/dh -log sigmoid(beta h) = -beta sigmoid(-beta h); h rises with chosen and falls with rejected.
    margin = (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)
    expected = -beta * torch.sigmoid(-beta * margin.detach())
    torch.testing.assert_close(policy_chosen.grad, expected)
    torch.testing.assert_close(policy_rejected.grad, -expected)
    assert reference_chosen.grad is None and not reference_chosen.requires_grad
    assert reference_rejected.grad is None and not reference_rejected.requires_grad
    metrics = preference_metrics(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta)
    assert not any(value.requires_grad for value in metrics.values())


# --- the registry and its errors ---------------------------------------------------------------------


def test_registry_dispatches_to_the_named_function() -> None:
    expected = {"sigmoid": dpo_sigmoid_loss, "ipo": ipo_loss, "hinge": hinge_loss, "robust": robust_loss}
    assert expected == PREFERENCE_LOSSES
    logps = _random_logps(seed=11)
    torch.testing.assert_close(preference_loss("ipo", *logps, beta=0.3), ipo_loss(*logps, beta=0.3))
    torch.testing.assert_close(
        preference_loss("sigmoid", *logps, beta=0.3, label_smoothing=0.1),
        dpo_sigmoid_loss(*logps, beta=0.3, label_smoothing=0.1),
    )
    torch.testing.assert_close(
        preference_loss("robust", *logps, beta=0.3, label_smoothing=0.1),
        robust_loss(*logps, beta=0.3, label_smoothing=0.1),
    )


def test_unknown_loss_name_lists_the_known_ones() -> None:
    with pytest.raises(
        ValueError, match=r"unknown preference loss 'kto'; known: hinge, ipo, robust, sigmoid"
    ):
        preference_loss("kto", *_random_logps(), beta=0.1)


def test_bad_arguments_are_errors() -> None:
    logps = _random_logps()
    with pytest.raises(ValueError, match="beta must be positive"):
        ipo_loss(*logps, beta=0.0)
    with pytest.raises(ValueError, match=r"label_smoothing must lie in \[0, 0.5\)"):
        dpo_sigmoid_loss(*logps, beta=0.1, label_smoothing=0.5)
    with pytest.raises(ValueError, match="same shape"):
        hinge_loss(logps[0], logps[1][:4], logps[2], logps[3], beta=0.1)
    with pytest.raises(TypeError):
        preference_loss("hinge", *logps, beta=0.1, label_smoothing=0.1)
    for smoothing in (0.0, 0.5, -0.1):  # 0 would be plain DPO; at 0.5 the loss divides by 0
        with pytest.raises(ValueError, match=r"label_smoothing must lie in \(0, 0.5\) for the robust loss"):
            robust_loss(*logps, beta=0.1, label_smoothing=smoothing)
    with pytest.raises(ValueError, match="beta must be positive"):
        robust_loss(*logps, beta=-1.0, label_smoothing=0.1)
    with pytest.raises(TypeError):  # robust has no default label_smoothing
        preference_loss("robust", *logps, beta=0.1)
