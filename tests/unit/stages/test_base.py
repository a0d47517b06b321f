"""supervised_logits: the output layer only where a token is supervised, against the full-logits path."""

from __future__ import annotations

import copy

import pytest
import torch

from lalm.data.collators import ConversationCollator
from lalm.data.dataset import ManifestDataset
from lalm.losses.token import sequence_logps, token_logps
from lalm.stages.base import logits_of, masked_labels, output_layer, supervised_logits


def _batch(processor, corpus_dir):  # noqa: ANN001, ANN202
    dataset = ManifestDataset.from_manifest(str(corpus_dir / "pretrain" / "train.jsonl"), "pretrain")
    examples = [dataset[i] for i in range(3)]
    examples[2] = {**examples[2], "weight": 0.0}  # a padding row: nothing of it is supervised
    return ConversationCollator(processor)(examples)


def test_packed_logits_equal_the_full_path_in_value_and_gradient(tiny, corpus_dir) -> None:  # noqa: ANN001
    model, processor = tiny
    full_model, packed_model = copy.deepcopy(model).train(), copy.deepcopy(model).train()
    batch = _batch(processor, corpus_dir)
    labels = masked_labels(batch)
    assert (labels[2] == -100).all() and (labels[0] != -100).any()

    full = token_logps(logits_of(full_model, batch), labels)
    packed = supervised_logits(packed_model, batch, labels)
    assert packed.logits.shape == (int((labels[:, 1:] != -100).sum()), model.config.text_config.vocab_size)
    torch.testing.assert_close(packed.logps(), full[labels[:, 1:] != -100], rtol=1e-5, atol=1e-5)
    sums, counts = packed.sequence_logps()
    full_sums, full_counts = sequence_logps(logits_of(full_model, batch), labels)
    torch.testing.assert_close(sums, full_sums, rtol=1e-5, atol=1e-4)
    assert torch.equal(counts, full_counts) and int(counts[2]) == 0

    full.sum().backward()
    packed.logps().sum().backward()
    for (name, a), b in zip(full_model.named_parameters(), packed_model.parameters(), strict=True):
        if a.grad is None:
            assert b.grad is None, name
            continue
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_the_hook_is_gone_after_the_forward(tiny, corpus_dir) -> None:  # noqa: ANN001
    model, processor = tiny
    batch = _batch(processor, corpus_dir)
    with torch.no_grad():
        supervised_logits(model, batch, masked_labels(batch))
        logits = logits_of(model, batch)
    assert logits.shape[:2] == batch["input_ids"].shape
    assert not output_layer(model)._forward_pre_hooks


def test_nothing_supervised_gives_zero_rows(tiny, corpus_dir) -> None:  # noqa: ANN001
    model, processor = tiny
    batch = _batch(processor, corpus_dir)
    with torch.no_grad():
        packed = supervised_logits(model, batch, torch.full_like(batch["labels"], -100))
    assert packed.logits.shape[0] == 0 and packed.logps().shape == (0,)
    sums, counts = packed.sequence_logps()
    assert torch.equal(sums, torch.zeros(3)) and torch.equal(counts, torch.zeros(3, dtype=torch.long))


def test_a_model_without_an_output_layer_is_named() -> None:
    with pytest.raises(ValueError, match="Linear has no output layer"):
        output_layer(type("Linear", (), {"get_output_embeddings": lambda self: None})())


def test_peft_wrapped_model_with_adapters_on_and_off(tiny, corpus_dir) -> None:  # noqa: ANN001
    from lalm.config.train import LoraConfig, PretrainStageConfig
    from lalm.training.params import prepare_trainable

    model, processor = tiny
    stage = PretrainStageConfig(
        train_encoder=False, train_projector=False, lora=LoraConfig(enabled=True, r=4)
    )
    wrapped = prepare_trainable(copy.deepcopy(model), stage)
    for name, parameter in wrapped.named_parameters():  # make the adapters matter (B starts at 0)
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.5)
    batch = _batch(processor, corpus_dir)
    labels = masked_labels(batch)
    with torch.no_grad():
        on = supervised_logits(wrapped, batch, labels).logps()
        torch.testing.assert_close(on, token_logps(logits_of(wrapped, batch), labels)[labels[:, 1:] != -100])
        with wrapped.disable_adapter():
            off = supervised_logits(wrapped, batch, labels).logps()
        base = supervised_logits(model, batch, labels).logps()
    torch.testing.assert_close(off, base, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(on, off)
