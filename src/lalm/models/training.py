"""The module the trainer trains: transformers' Qwen2-Audio plus training-only heads, with one forward.

`AudioLanguageModel` holds the Hugging Face model (`.hf`, possibly peft-wrapped; it alone is saved to
final/) and, for pretraining, the auxiliary CTC head (`.ctc_head`, never exported). Its forward
replaces Qwen2AudioForConditionalGeneration.forward for training and scoring because that forward:
  - encodes one feature row per audio span, so a clip shared by the chosen and rejected rows of a DPO
    pair is encoded twice (four times with the reference); here each clip is encoded once, and a
    caller may pass encoder states computed once for several models (`encoded`);
  - applies the LM head at every position (B, L, V); here it runs only where a token is supervised;
  - syncs the host to count audio tokens (`.item()`).
The layers that run are transformers' own (audio tower, projector, embeddings, decoder, head), so the
results equal the stock forward's (tests/unit/models/test_training.py checks log-probs against it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lalm.data.chat import audio_token_count
from lalm.data.collators import IGNORE_INDEX
from lalm.losses.token import row_sums, target_logps
from lalm.models.encoder import encoder_attention_mask, merge_windows

Batch = dict[str, Any]


@dataclass
class Supervised:
    """The output layer's logits at the positions that predict a supervised token, packed row-major:
    logits (N, V), their targets (N,) and the batch row of each (N,); `num_rows` rows in the batch."""

    logits: torch.Tensor
    targets: torch.Tensor
    rows: torch.Tensor
    num_rows: int

    def logps(self) -> torch.Tensor:
        """(N,) float32 log-probability of each target."""
        return target_logps(self.logits, self.targets)

    def sequence_logps(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed target log-probs per row and the number of targets: ((rows,), (rows,) long)."""
        return row_sums(self.logps(), self.rows, self.num_rows)


@dataclass
class ForwardOutput:
    supervised: Supervised
    ctc_logits: torch.Tensor | None = None  # (K, T, V) for the clips `ctc_clips` asked for
    ctc_lengths: torch.Tensor | None = None  # (K,) long: their real encoder frames


@dataclass
class Encoded:
    """Audio encoder output per clip: states (C, T, d_encoder), real frames per clip (C,) long. A clip
    longer than the encoder's window has its windows' frames end to end (lalm.models.encoder.merge_windows)."""

    states: torch.Tensor
    lengths: torch.Tensor


class AudioLanguageModel(nn.Module):
    """Qwen2-Audio for training: `hf` is the transformers model (peft-wrapped under LoRA), `ctc_head`
    an optional Linear(encoder width -> vocabulary) on the encoder output (pretraining's auxiliary loss)."""

    def __init__(self, hf: nn.Module, ctc_head: nn.Module | None = None) -> None:
        super().__init__()
        self.hf: Any = hf  # Any: peft's and transformers' attributes are looked up dynamically
        self.ctc_head = ctc_head

    @property
    def base(self) -> Any:
        """The Qwen2AudioForConditionalGeneration (under LoRA: peft's base model, adapters injected)."""
        return self.hf.get_base_model() if hasattr(self.hf, "get_base_model") else self.hf

    def encoder_trainable(self) -> bool:
        return any(p.requires_grad for p in self.base.model.audio_tower.parameters())

    def encode(
        self,
        input_features: torch.Tensor,
        feature_attention_mask: torch.Tensor,
        clip_windows: torch.Tensor | None = None,
    ) -> Encoded:
        """The audio tower on N windows of C clips: features (N, mel, F), mask (N, F), clip_windows (C,)
        (None: one window per clip) -> Encoded per clip, (C, ~F/4 x its windows, d)."""
        tower = self.base.model.audio_tower
        mask = encoder_attention_mask(tower.config, feature_attention_mask, tower.conv1.weight.dtype)
        states = tower(input_features, attention_mask=mask).last_hidden_state
        lengths = audio_token_count(feature_attention_mask.sum(-1))
        if clip_windows is not None:
            states, lengths = merge_windows(states, lengths, clip_windows)
        return Encoded(states, lengths)

    def forward(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        labels: torch.Tensor | None,
        input_features: torch.Tensor | None = None,
        feature_attention_mask: torch.Tensor | None = None,
        audio_clip_index: torch.Tensor | None = None,
        clip_windows: torch.Tensor | None = None,
        encoded: Encoded | None = None,
        ctc_clips: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        sequence_index: torch.Tensor | None = None,
        num_rows: int | None = None,
        encode_only: bool = False,
    ) -> Any:
        """input_ids/attention_mask/labels (R, L); C clips as features (N, mel, F) + mask (N, F) of their
        N windows + clip_windows (C,) (lalm.data.features; None: N == C), or already `encoded`;
        audio_clip_index (S,) the clip of each audio span in row-major order; ctc_clips (K,) clips to
        apply the CTC head to (on a long clip's windows end to end). -> ForwardOutput: logits where labels[:, t + 1]
        is a target. A packed batch (lalm.data.packing) gives (1, T) rows, its position_ids,
        sequence_index and num_rows, and attention_mask None. encode_only -> Encoded: the clips through the audio tower only (called through
        the DeepSpeed engine, so ZeRO-3 gathers the tower's weights as in any forward)."""
        if encode_only:
            assert input_features is not None and feature_attention_mask is not None
            return self.encode(input_features, feature_attention_mask, clip_windows)
        assert input_ids is not None and labels is not None
        keep = labels[:, 1:] != IGNORE_INDEX  # (R, L-1): position t predicts labels[:, t + 1]
        base = self.base
        embeds = base.get_input_embeddings()(input_ids)
        ctc_logits = None
        if encoded is None and input_features is not None:
            assert feature_attention_mask is not None
            encoded = self.encode(input_features, feature_attention_mask, clip_windows)
        ctc_lengths = None
        if encoded is not None:
            assert audio_clip_index is not None
            if self.ctc_head is not None and ctc_clips is not None:
                ctc_logits = self.ctc_head(encoded.states.index_select(0, ctc_clips))
                ctc_lengths = encoded.lengths.index_select(0, ctc_clips)
            embeds = self._fill_audio(embeds, input_ids, encoded, audio_clip_index)
        hidden = base.model.language_model(
            inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state
        logits = base.get_output_embeddings()(hidden[:, :-1][keep])
        # Packed: each target's row is its sequence's, not the batch row (there is one).
        rows = keep.nonzero()[:, 0] if sequence_index is None else sequence_index[:, 1:][keep]
        count = labels.shape[0] if num_rows is None else num_rows
        return ForwardOutput(Supervised(logits, labels[:, 1:][keep], rows, count), ctc_logits, ctc_lengths)

    def _fill_audio(
        self, embeds: torch.Tensor, input_ids: torch.Tensor, encoded: Encoded, clip_index: torch.Tensor
    ) -> torch.Tensor:
        """Projected audio frames written over the audio tokens, span after span (R, L, D)."""
        audio = self.base.model.multi_modal_projector(encoded.states)  # (C, T, D): each clip once
        frames = torch.arange(audio.shape[1], device=audio.device)
        real = frames[None, :] < encoded.lengths.to(audio.device)[:, None]  # (C, T)
        spans = audio.index_select(0, clip_index)[real.index_select(0, clip_index)]  # (audio tokens, D)
        slots = (input_ids == self.base.config.audio_token_id).unsqueeze(-1)
        # The collators put exactly a clip's audio_token_count tokens in its span, so counts match; a
        # check here would cost a host sync every forward (transformers' forward does one).
        return embeds.masked_scatter(slots, spans.to(embeds.dtype))


def training_module(model: Any) -> AudioLanguageModel:
    """The AudioLanguageModel inside a DeepSpeed engine, or a bare transformers model wrapped (scoring)."""
    module = getattr(model, "module", model)
    return module if isinstance(module, AudioLanguageModel) else AudioLanguageModel(module)


def forward_batch(
    model: Any,
    batch: Batch,
    labels: torch.Tensor | None = None,
    encoded: Encoded | None = None,
    ctc_clips: torch.Tensor | None = None,
) -> ForwardOutput:
    """The forward of `model` (engine, AudioLanguageModel or transformers model) on a collated batch;
    `labels` replaces the batch's (e.g. with weight-0 rows masked)."""
    packed = "sequence_index" in batch
    inputs: dict[str, Any] = {
        "input_ids": batch["input_ids"],
        # Packed: no mask, so transformers derives the rows' attention from position_ids.
        "attention_mask": None if packed else batch["attention_mask"],
        "labels": batch["labels"] if labels is None else labels,
        "position_ids": batch.get("position_ids"),
    }
    if packed:
        inputs.update(sequence_index=batch["sequence_index"], num_rows=batch["num_rows"])
    if "input_features" in batch or encoded is not None:
        inputs["audio_clip_index"] = batch["audio_clip_index"]
        if encoded is None:
            inputs["input_features"] = batch["input_features"]
            inputs["feature_attention_mask"] = batch["feature_attention_mask"]
            inputs["clip_windows"] = batch.get("clip_windows")
    if encoded is not None:
        inputs["encoded"] = encoded
    if ctc_clips is not None:
        inputs["ctc_clips"] = ctc_clips
    if isinstance(getattr(model, "module", model), AudioLanguageModel):
        return model(**inputs)  # an engine: its forward, so ZeRO's hooks and bookkeeping run
    return training_module(model)(**inputs)


def encode_batch(model: Any, batch: Batch) -> Encoded:
    """The batch's clips through the audio tower of `model` (engine or AudioLanguageModel): per clip, a
    long clip's windows end to end."""
    features, mask = batch["input_features"], batch["feature_attention_mask"]
    windows = batch.get("clip_windows")
    if isinstance(getattr(model, "module", model), AudioLanguageModel):
        return model(None, None, None, features, mask, clip_windows=windows, encode_only=True)  # type: ignore[no-any-return]
    return training_module(model).encode(features, mask, windows)


def sequence_logps_of(
    model: Any, batch: Batch, encoded: Encoded | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probs of each row's supervised tokens under `model`, and their counts ((R,), (R,))."""
    return forward_batch(model, batch, encoded=encoded).supervised.sequence_logps()


def build_ctc_head(model: Any, seed: int = 0) -> nn.Linear:
    """Linear(encoder width -> vocabulary), initialised from `seed` without touching the global RNG."""
    config = model.config
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    head = nn.Linear(config.audio_config.d_model, config.text_config.vocab_size)
    torch.random.set_rng_state(generator_state)
    return head


# Which transformer layers trainer.activation_checkpointing recomputes in backward.
CHECKPOINTED_PARTS = {
    "none": (),
    "full": ("model.audio_tower.", "model.language_model."),
    "llm": ("model.language_model.",),
    "encoder": ("model.audio_tower.",),
}


def enable_activation_checkpointing(model: Any, which: str) -> int:
    """Turn on transformers' checkpointing (non-reentrant: works with frozen inputs and ZeRO-3's
    hooks) for the layers of `which` part of a Qwen2-Audio model; returns how many layers."""
    if which not in CHECKPOINTED_PARTS:
        raise ValueError(f"activation checkpointing {which!r}: expected one of {sorted(CHECKPOINTED_PARTS)}")
    parts = CHECKPOINTED_PARTS[which]
    if not parts:
        return 0
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    count = 0
    for name, module in model.named_modules():
        if getattr(module, "gradient_checkpointing", False):
            module.gradient_checkpointing = any(part in name for part in parts)
            count += int(module.gradient_checkpointing)
    return count


def exported_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An AudioLanguageModel state dict -> the transformers model's (the `hf.` entries, unprefixed)."""
    return {k[len("hf.") :]: v for k, v in state.items() if k.startswith("hf.")}
