"""Preference losses of the DPO family, one function per variant, and the metrics TRL logs for them.

Every function takes the per-example summed sequence log-probabilities of the chosen and rejected
responses under the policy and under the frozen reference, each (B,) (see lalm.models.training.Supervised.sequence_logps),
and returns per-example values (B,): the trainer sums, normalises and averages across ranks.

All of them are functions of the same margin of log-ratios

    h = (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)

which is positive when the policy prefers the chosen response more than the reference does.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def _margin(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
) -> torch.Tensor:
    """The four (B,) log-probabilities -> h (B,), the chosen minus the rejected log-ratio."""
    if not policy_chosen.shape == policy_rejected.shape == reference_chosen.shape == reference_rejected.shape:
        raise ValueError(
            "policy and reference log-probabilities must have the same shape (B,), got "
            f"{[tuple(t.shape) for t in (policy_chosen, policy_rejected, reference_chosen, reference_rejected)]}"
        )
    return (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)


def _check_beta(beta: float) -> None:
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")


def dpo_sigmoid_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """DPO: -(1-ε) log σ(βh) - ε log σ(-βh), four (B,) inputs -> (B,).

    ε = 0 is DPO (Rafailov et al. 2023, Eq. 7). ε > 0 is conservative DPO (cDPO, Mitchell 2023, "A note
    on DPO with noisy preferences"): the label is taken as flipped with probability ε, so the loss stops
    pushing h up once σ(βh) reaches 1-ε. With h = 0 the loss is log 2 for every β and ε.
    """
    _check_beta(beta)
    if not 0.0 <= label_smoothing < 0.5:
        # At 0.5 both labels are equally likely and the loss has no gradient towards either response.
        raise ValueError(f"label_smoothing must lie in [0, 0.5), got {label_smoothing}")
    logits = beta * _margin(policy_chosen, policy_rejected, reference_chosen, reference_rejected)
    return -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)


def ipo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """IPO: (h - 1/(2β))², four (B,) inputs -> (B,).

    Azar et al. 2023, Eq. 17, with β in the role of their τ: the squared loss pulls h to 1/(2β) instead
    of to infinity, so it does not overfit deterministic preferences. TRL feeds IPO log-probabilities
    averaged over each response's tokens (so the target margin does not depend on length); pass means,
    not sums, to get TRL's IPO.
    """
    _check_beta(beta)
    margin = _margin(policy_chosen, policy_rejected, reference_chosen, reference_rejected)
    return (margin - 1 / (2 * beta)) ** 2


def hinge_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Hinge: relu(1 - βh), four (B,) inputs -> (B,).

    The rank calibration loss of SLiC-HF (Zhao et al. 2023), max(0, δ - h), with margin δ = 1/β and
    scaled by β, as TRL writes it, and applied to the log-ratio margin h rather than to raw
    log-probabilities (the normalised-likelihood form of RSO, Liu et al. 2023). It is zero once
    βh >= 1, so pairs already separated by the margin stop contributing.
    """
    _check_beta(beta)
    margin = _margin(policy_chosen, policy_rejected, reference_chosen, reference_rejected)
    return torch.relu(1 - beta * margin)


def robust_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
    label_smoothing: float,
) -> torch.Tensor:
    """Robust DPO: (-(1-ε) log σ(βh) + ε log σ(-βh)) / (1 - 2ε), four (B,) inputs -> (B,).

    rDPO (Ray Chowdhury et al. 2024, "Provably Robust DPO"), TRL's "robust" loss. If each preference
    label was flipped at random with probability ε (label_smoothing), this is an unbiased estimate of the
    DPO loss on the true labels: averaged over the flip it is -log σ(βh). Unlike cDPO (dpo_sigmoid_loss
    with ε > 0) it never stops pushing h up (its slope in βh tends to -ε/(1-2ε)) and is not bounded
    below: a pair separated well enough has a negative loss. With h = 0 it is log 2 for every β and ε.
    ε = 0 would be plain DPO and is refused: use dpo_sigmoid_loss for that.
    """
    _check_beta(beta)
    if not 0.0 < label_smoothing < 0.5:
        # 0: no noise to correct for (plain DPO); 0.5: labels carry no information and 1 - 2ε = 0.
        raise ValueError(f"label_smoothing must lie in (0, 0.5) for the robust loss, got {label_smoothing}")
    logits = beta * _margin(policy_chosen, policy_rejected, reference_chosen, reference_rejected)
    as_labelled = -(1 - label_smoothing) * F.logsigmoid(logits)  # (1-ε) x the DPO loss of the pair
    swapped = -label_smoothing * F.logsigmoid(-logits)  # ε x the DPO loss with chosen and rejected swapped
    return (as_labelled - swapped) / (1 - 2 * label_smoothing)


def chosen_nll(policy_chosen: torch.Tensor, chosen_tokens: torch.Tensor) -> torch.Tensor:
    """Per-token negative log-likelihood of each chosen response, (B,) summed log-probs and (B,) token
    counts -> (B,).

    Added with weight `rpo_alpha` to a preference loss, it is RPO (Pang et al. 2024, "Iterative
    Reasoning Preference Optimization", Eq. 3; TRL's rpo_alpha): DPO alone can lower the chosen
    response's likelihood along with the rejected one's, and the NLL term keeps the policy generating
    the chosen answers. TRL averages the NLL over all chosen tokens of its batch; here each pair's mean
    is one unit, like the preference loss it is added to, so the trainer's per-pair normalisation holds.
    """
    if policy_chosen.shape != chosen_tokens.shape:
        raise ValueError(
            f"policy_chosen {tuple(policy_chosen.shape)} and chosen_tokens {tuple(chosen_tokens.shape)} differ"
        )
    return -policy_chosen / chosen_tokens.clamp(min=1)


PREFERENCE_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "sigmoid": dpo_sigmoid_loss,
    "ipo": ipo_loss,
    "hinge": hinge_loss,
    "robust": robust_loss,
}


def preference_loss(
    name: str,
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
    **options: float,
) -> torch.Tensor:
    """The loss named `name` (a key of PREFERENCE_LOSSES), four (B,) inputs -> (B,).

    `options` go to that loss only (label_smoothing is the sigmoid and robust losses'); an option the loss
    does not take is a TypeError.
    """
    if name not in PREFERENCE_LOSSES:
        raise ValueError(f"unknown preference loss {name!r}; known: {', '.join(sorted(PREFERENCE_LOSSES))}")
    loss_fn = PREFERENCE_LOSSES[name]
    return loss_fn(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta=beta, **options)


@torch.no_grad()
def preference_metrics(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
) -> dict[str, torch.Tensor]:
    """Per-example metrics under TRL's names, four (B,) inputs -> {name: (B,)}, without gradient.

    The implicit reward of a response is β times its policy/reference log-ratio (Rafailov et al. 2023,
    Eq. 5, without the prompt-only partition term, which cancels in the margin). The trainer averages
    each entry over the examples of all ranks, as TRL does.
    """
    _check_beta(beta)
    chosen = beta * (policy_chosen - reference_chosen)
    rejected = beta * (policy_rejected - reference_rejected)
    return {
        "rewards/chosen": chosen,
        "rewards/rejected": rejected,
        "rewards/margins": chosen - rejected,
        "rewards/accuracies": (chosen > rejected).float(),
        "logps/chosen": policy_chosen.detach(),
        "logps/rejected": policy_rejected.detach(),
    }
