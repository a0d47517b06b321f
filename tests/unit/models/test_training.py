"""AudioLanguageModel's forward (each clip encoded once, the output layer only where a token is
supervised) against transformers' own forward (every clip per span, the head on every position)."""

from __future__ import annotations

import copy

import pytest
import torch

from lalm.config.train import DpoStageConfig, LoraConfig, PretrainStageConfig
from lalm.data.collators import ConversationCollator, PreferenceCollator, model_inputs
from lalm.data.dataset import ManifestDataset
from lalm.losses.full_logits import sequence_logps, token_logps
from lalm.models.training import (
    AudioLanguageModel,
    build_ctc_head,
    enable_activation_checkpointing,
    exported_state,
    forward_batch,
)
from lalm.stages.base import masked_labels
from lalm.stages.dpo import DpoStage
from lalm.training.params import prepare_trainable


def _batch(processor, corpus_dir):  # noqa: ANN001, ANN202
    dataset = ManifestDataset.from_manifest(str(corpus_dir / "pretrain" / "train.jsonl"), "pretrain")
    examples = [dataset[i] for i in range(3)]
    examples[2] = {**examples[2], "weight": 0.0}  # a padding row: nothing of it is supervised
    return ConversationCollator(processor)(examples)


def _pairs(processor, corpus_dir):  # noqa: ANN001, ANN202
    dataset = ManifestDataset.from_manifest(str(corpus_dir / "dpo" / "train.jsonl"), "dpo")
    return PreferenceCollator(processor)([dataset[i] for i in range(3)])


def _stock_logits(model, batch):  # noqa: ANN001, ANN202
    """The reference implementation: transformers' forward, one feature row per span, (R, L, V)."""
    return model(**model_inputs(batch), use_cache=False).logits


def test_logps_and_gradients_equal_the_stock_forward(tiny, corpus_dir) -> None:  # noqa: ANN001
    model, processor = tiny
    stock, ours = copy.deepcopy(model).train(), AudioLanguageModel(copy.deepcopy(model)).train()
    batch = _batch(processor, corpus_dir)
    labels = masked_labels(batch)
    assert (labels[2] == -100).all() and (labels[0] != -100).any()

    full = token_logps(_stock_logits(stock, batch), labels)
    packed = forward_batch(ours, batch, labels).supervised
    assert packed.logits.shape == (int((labels[:, 1:] != -100).sum()), model.config.text_config.vocab_size)
    torch.testing.assert_close(packed.logps(), full[labels[:, 1:] != -100], rtol=1e-5, atol=1e-5)
    sums, counts = packed.sequence_logps()
    full_sums, full_counts = sequence_logps(_stock_logits(stock, batch), labels)
    torch.testing.assert_close(sums, full_sums, rtol=1e-5, atol=1e-4)
    assert torch.equal(counts, full_counts) and int(counts[2]) == 0

    full.sum().backward()
    packed.logps().sum().backward()
    for (name, a), b in zip(stock.named_parameters(), ours.hf.parameters(), strict=True):
        if a.grad is None:
            assert b.grad is None, name
            continue
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_shared_clips_are_encoded_once_and_score_like_the_stock_forward(tiny, corpus_dir) -> None:  # noqa: ANN001
    """DPO rows share their pair's clips: the stock forward encodes 2 rows x C clips, ours C."""
    model, processor = tiny
    batch = _pairs(processor, corpus_dir)
    clips = batch["input_features"].shape[0]
    assert len(batch["audio_clip_index"]) == 2 * clips
    ours = AudioLanguageModel(model).eval()
    seen: list[int] = []
    handle = model.model.audio_tower.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    try:
        with torch.no_grad():
            sums, counts = forward_batch(ours, batch).supervised.sequence_logps()
            assert seen == [clips]
            expected, expected_counts = sequence_logps(_stock_logits(model, batch), batch["labels"])
            assert seen == [clips, 2 * clips]
            encoded = ours.encode(batch["input_features"], batch["feature_attention_mask"])
            again = forward_batch(ours, batch, encoded=encoded).supervised.sequence_logps()[0]
            assert seen == [clips, 2 * clips, clips]  # given `encoded`, the forward encodes nothing
    finally:
        handle.remove()
    torch.testing.assert_close(sums, expected, rtol=1e-5, atol=1e-4)
    assert torch.equal(counts, expected_counts)
    torch.testing.assert_close(again, sums, rtol=0, atol=0)


def _encoder_calls(stage: DpoStage, policy, batch) -> list[int]:  # noqa: ANN001
    """Clips per audio-tower call during one DPO forward (policy and reference share no tower)."""
    seen: list[int] = []
    towers = [policy.base.model.audio_tower, stage.reference.base.model.audio_tower]
    handles = [t.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0])) for t in towers]
    try:
        with torch.no_grad():
            stage.forward(policy, batch)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def test_dpo_encodes_each_clip_once_per_step_with_a_frozen_encoder(tiny, corpus_dir) -> None:  # noqa: ANN001
    model, processor = tiny
    batch = _pairs(processor, corpus_dir)
    clips = batch["input_features"].shape[0]
    policy = AudioLanguageModel(copy.deepcopy(model))
    reference = AudioLanguageModel(copy.deepcopy(model)).eval()
    stage = DpoStage(DpoStageConfig(beta=0.1), reference)
    policy.base.model.audio_tower.requires_grad_(False)
    assert _encoder_calls(stage, policy, batch) == [clips]  # one pass serves all four log-probs
    policy.base.model.audio_tower.requires_grad_(True)
    assert _encoder_calls(stage, policy, batch) == [clips, clips]  # trained: the policy's own, once
    # Both paths give the same loss: the frozen policy encoder is the reference's.
    policy.base.model.audio_tower.requires_grad_(False)
    with torch.no_grad():
        shared = stage.forward(policy, batch)
        policy.base.model.audio_tower.requires_grad_(True)
        separate = stage.forward(policy, batch)
    torch.testing.assert_close(shared.loss, separate.loss, rtol=1e-6, atol=1e-6)


def test_nothing_supervised_gives_zero_rows(tiny, corpus_dir) -> None:  # noqa: ANN001
    model, processor = tiny
    batch = _batch(processor, corpus_dir)
    with torch.no_grad():
        packed = forward_batch(model, batch, torch.full_like(batch["labels"], -100)).supervised
    assert packed.logits.shape[0] == 0 and packed.logps().shape == (0,)
    sums, counts = packed.sequence_logps()
    assert torch.equal(sums, torch.zeros(3)) and torch.equal(counts, torch.zeros(3, dtype=torch.long))


def test_the_ctc_head_sees_the_encoder_output_of_the_asked_clips(tiny, corpus_dir) -> None:  # noqa: ANN001
    model, processor = tiny
    ours = AudioLanguageModel(model, build_ctc_head(model, seed=0)).eval()
    batch = _batch(processor, corpus_dir)
    clips = torch.tensor([0, 2])
    with torch.no_grad():
        out = forward_batch(ours, batch, ctc_clips=clips)
        encoded = ours.encode(batch["input_features"], batch["feature_attention_mask"])
    assert out.ctc_logits is not None and out.ctc_logits.shape[0] == 2
    torch.testing.assert_close(out.ctc_logits, ours.ctc_head(encoded.states[clips]))
    # The head is training-only: the exported state is exactly the transformers model's.
    assert set(exported_state(ours.state_dict())) == set(model.state_dict())


def test_peft_wrapped_model_with_adapters_on_and_off(tiny, corpus_dir) -> None:  # noqa: ANN001
    model, processor = tiny
    stage = PretrainStageConfig(
        train_encoder=False, train_projector=False, lora=LoraConfig(enabled=True, r=4)
    )
    wrapped = prepare_trainable(AudioLanguageModel(copy.deepcopy(model)), stage)
    assert hasattr(wrapped.hf, "disable_adapter")
    for name, parameter in wrapped.named_parameters():  # make the adapters matter (B starts at 0)
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.5)
    batch = _batch(processor, corpus_dir)
    labels = masked_labels(batch)
    with torch.no_grad():
        on = forward_batch(wrapped, batch, labels).supervised.logps()
        stock = token_logps(_stock_logits(wrapped.hf, batch), labels)[labels[:, 1:] != -100]
        torch.testing.assert_close(on, stock)
        with wrapped.hf.disable_adapter():
            off = forward_batch(wrapped, batch, labels).supervised.logps()
        base = forward_batch(model, batch, labels).supervised.logps()
    torch.testing.assert_close(off, base, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(on, off)


@pytest.mark.parametrize("which", ["full", "llm", "encoder"])
def test_activation_checkpointing_recomputes_and_changes_nothing(tiny, corpus_dir, which: str) -> None:  # noqa: ANN001
    model, processor = tiny
    batch = _batch(processor, corpus_dir)
    plain, checkpointed = copy.deepcopy(model).train(), copy.deepcopy(model).train()
    layers = enable_activation_checkpointing(checkpointed, which)
    config = model.config
    expected_layers = {
        "full": config.audio_config.encoder_layers + config.text_config.num_hidden_layers,
        "llm": config.text_config.num_hidden_layers,
        "encoder": config.audio_config.encoder_layers,
    }[which]
    assert layers == expected_layers
    calls = {"llm": 0, "encoder": 0}

    def counter(part: str):  # noqa: ANN202
        def hook(module, args):  # noqa: ANN001, ANN202
            calls[part] += 1

        return hook

    # Pre-hooks: torch stops a recompute as soon as the saved tensors are back, before a module's end.
    checkpointed.model.language_model.layers[0].mlp.register_forward_pre_hook(counter("llm"))
    checkpointed.model.audio_tower.layers[0].fc1.register_forward_pre_hook(counter("encoder"))
    losses = []
    for module in (plain, checkpointed):
        loss = -forward_batch(module, batch, masked_labels(batch)).supervised.logps().sum()
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[0], losses[1])
    # A checkpointed layer runs again in backward.
    assert calls == {
        "llm": 2 if which in ("full", "llm") else 1,
        "encoder": 2 if which in ("full", "encoder") else 1,
    }
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters(), strict=True):
        if a.grad is not None:
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-7, msg=name)


def _lm_grads(model, stage, batch):  # noqa: ANN001, ANN202
    model.zero_grad(set_to_none=True)
    out = stage.forward(model, batch)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out, grads


@pytest.mark.parametrize("stage_name", ["pretrain_ctc", "sft", "dpo"])
def test_packed_and_padded_batches_give_the_same_loss_and_gradients(tiny, corpus_dir, stage_name) -> None:  # noqa: ANN001
    from lalm.data.packing import pack_batch
    from lalm.models.tokenizer import SPECIAL_TOKENS
    from lalm.stages.lm import LanguageModelingStage

    model, processor = tiny
    manifest = "dpo" if stage_name == "dpo" else stage_name.split("_")[0]
    dataset = ManifestDataset.from_manifest(str(corpus_dir / manifest / "train.jsonl"), manifest)
    examples = [dataset[i] for i in range(4)]
    examples[3] = {**examples[3], "weight": 0.0}  # evaluation padding: packed, it must still weigh 0
    if stage_name == "dpo":
        reference = AudioLanguageModel(copy.deepcopy(model)).eval()
        stage = DpoStage(DpoStageConfig(beta=0.2, rpo_alpha=0.3), reference)
        batch = PreferenceCollator(processor)(examples)
        trained = AudioLanguageModel(copy.deepcopy(model)).train()
        torch.manual_seed(0)
        with torch.no_grad():  # so the margins are not 0
            for parameter in trained.parameters():
                parameter.add_(0.01 * torch.randn_like(parameter))
    else:
        special = tuple(processor.tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS)))
        ctc = 0.5 if stage_name == "pretrain_ctc" else 0.0
        stage = LanguageModelingStage(manifest, ctc_weight=ctc, special_ids=special)
        batch = ConversationCollator(processor)(examples)
        head = build_ctc_head(model) if ctc else None
        trained = AudioLanguageModel(copy.deepcopy(model), head).train()
    packed = pack_batch(batch)
    assert packed["input_ids"].shape[1] == int(batch["attention_mask"].sum()) < batch["input_ids"].numel()
    assert stage.count_units(packed) == stage.count_units(batch) > 0
    padded_out, padded_grads = _lm_grads(trained, stage, batch)
    packed_out, packed_grads = _lm_grads(trained, stage, packed)
    torch.testing.assert_close(packed_out.loss, padded_out.loss, rtol=1e-5, atol=1e-5)
    assert float(packed_out.units) == float(padded_out.units)
    for name, value in padded_out.metrics.items():
        torch.testing.assert_close(packed_out.metrics[name], value, rtol=1e-5, atol=1e-5, msg=name)
    assert packed_grads.keys() == padded_grads.keys() and len(packed_grads) > 10
    for name, grad in padded_grads.items():
        # Summation order differs between the layouts; the audio tower's biases sum over every frame.
        torch.testing.assert_close(packed_grads[name], grad, rtol=1e-4, atol=1e-5, msg=name)
