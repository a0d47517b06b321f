"""Loss normalisation: one optimizer step equals the gradient of the mean token loss over the whole
step, whatever the split into micro-batches (micro 4 x accumulation 1 == micro 1 x accumulation 4).

Adam's first step is lr * g / (|g| + eps) exactly (bias corrections cancel), so with eps = 1 (much
larger than these gradients) the update is nearly linear in g: a wrongly scaled loss shows up.
"""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2AudioForConditionalGeneration

from lalm.data.collators import model_inputs
from lalm.losses.full_logits import lm_loss_sum
from lalm.models.encoder import enable_length_aware_encoder
from tests.integration.runs import run_stage

LR, EPS = 1.0, 1.0
ONE_ADAM_STEP = (
    "trainer.max_steps=1",
    "trainer.eval_every=0",
    "trainer.global_batch_size=4",
    f"optim.lr={LR}",
    f"optim.eps={EPS}",
    "optim.max_grad_norm=0",
    "optim.weight_decay=0",
)


@pytest.fixture(scope="module")
def start(corpus_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("start")
    run_stage(corpus_dir, out, "pretrain")
    return out / "pretrain" / "final"


def _delta(corpus_dir, out, start, micro):
    trainer, before = run_stage(
        corpus_dir, out, "sft", f"init_from={start}", f"trainer.micro_batch_size={micro}", *ONE_ADAM_STEP
    )
    after = dict(trainer.engine.module.hf.named_parameters())
    return trainer, {name: after[name].detach() - before["hf." + name] for name in after}


def _expected_delta(trainer, start):
    """The same 4 examples, one plain transformers forward/backward of the mean token loss."""
    model = enable_length_aware_encoder(Qwen2AudioForConditionalGeneration.from_pretrained(start).train())
    stream = trainer.stage.sample_stream(trainer.data.train, trainer.data.seed)
    batch = trainer.data.collator([trainer.data.train[stream[k]] for k in range(4)])
    loss_sum, tokens = lm_loss_sum(model(**model_inputs(batch)).logits, batch["labels"])
    (loss_sum / tokens).backward()
    return {n: -LR * p.grad / (p.grad.abs() + EPS) for n, p in model.named_parameters() if p.grad is not None}


def test_accumulation_invariance_and_exact_normalisation(corpus_dir, tmp_path, start):
    trainer, one_batch = _delta(corpus_dir, tmp_path / "a", start, micro=4)
    _, four_micro = _delta(corpus_dir, tmp_path / "b", start, micro=1)
    trainable = {n for n, p in trainer.engine.module.hf.named_parameters() if p.requires_grad}
    expected = {n: d for n, d in _expected_delta(trainer, start).items() if n in trainable}
    assert len(expected) > 50
    # atol: deltas are read back as (w + delta) - w in float32, 2 ulp of a weight near 1.0.
    for name, delta in expected.items():
        torch.testing.assert_close(one_batch[name], four_micro[name], rtol=1e-4, atol=3e-7, msg=name)
        torch.testing.assert_close(one_batch[name], delta, rtol=1e-3, atol=3e-7, msg=name)
    # The check has teeth: the update is far from lr * sign(g), and a loss twice too big would show.
    biggest = max(expected.values(), key=lambda d: d.abs().max())
    assert 1e-4 < biggest.abs().max() < 0.5
