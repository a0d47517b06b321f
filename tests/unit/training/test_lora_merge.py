"""merge_lora_state: the exported weights of a LoRA model equal peft's own merge."""

from __future__ import annotations

import copy

import torch

from lalm.config.train import LoraConfig, SftStageConfig
from lalm.models.training import AudioLanguageModel
from lalm.training.checkpoint import lora_scale, merge_lora_state
from lalm.training.params import prepare_trainable


def test_state_dict_merge_equals_peft_merge_and_unload(tiny) -> None:  # noqa: ANN001
    model, _ = tiny
    stage = SftStageConfig(train_llm=False, lora=LoraConfig(enabled=True, r=4, alpha=8))
    wrapped = prepare_trainable(AudioLanguageModel(copy.deepcopy(model)), stage)
    torch.manual_seed(0)
    for name, parameter in wrapped.named_parameters():  # B starts at 0: give the adapters an effect
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.5)
    assert lora_scale(wrapped.hf) == 2.0
    merged = merge_lora_state(wrapped.hf.state_dict(), lora_scale(wrapped.hf))
    expected = copy.deepcopy(wrapped.hf).merge_and_unload().state_dict()
    assert merged.keys() == expected.keys() == model.state_dict().keys()
    changed = [k for k in merged if not torch.equal(merged[k], model.state_dict()[k])]
    assert changed and all("language_model" in k and "proj" in k for k in changed)
    for key, value in expected.items():
        torch.testing.assert_close(merged[key], value, rtol=1e-5, atol=1e-6, msg=key)
