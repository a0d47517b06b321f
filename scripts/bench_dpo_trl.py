"""TRL's side of scripts/bench_dpo.py: trl.DPOTrainer on a text dataset that maps back to our token ids.

TRL 1.16 defaults, kept: gradient checkpointing ON (DPOConfig), AdamW `adamw_torch_fused` (transformers'
default for torch >= 2.8), its reference a frozen copy run every step (precompute_ref_log_probs=False),
its fused LM head (trl/trainer/utils.py add_fused_lm_head), which projects through the head only the
positions with a completion label when `_use_triton(device)` holds (trl/kernels/chunked_logprob.py:
Triton importable and a cuda or xpu device) and every position otherwise. So on any CPU TRL scores all
P+C positions of a row, and on a CUDA machine with Triton (PyTorch's CUDA wheels bring it; no Liger
needed) only the C completion positions, as lalm does. With --bf16 TRL runs DPOConfig(bf16=True):
accelerate's autocast around fp32 weights, the recipe lalm's side copies.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch

BETA = 0.1
EOS = "<|endoftext|>"


def _word_tokenizer(vocab: int) -> Any:
    """Token id i <-> word "t{i}", EOS last: TRL's tokenization gives back exactly our ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {f"t{i}": i for i in range(vocab - 1)} | {EOS: vocab - 1}
    tokenizer = Tokenizer(models.WordLevel(words, unk_token=EOS))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS, pad_token=EOS)


def _as_text(ids: torch.Tensor, vocab: int) -> str:
    return " ".join(EOS if i == vocab - 1 else f"t{i}" for i in ids.tolist())


def _text_dataset(data: dict[str, torch.Tensor], vocab: int) -> Any:
    """TRL's standard (not conversational) preference format; completions start with the separator, and
    end with EOS already, so TRL adds none."""
    import datasets

    datasets.disable_progress_bars()
    return datasets.Dataset.from_dict(
        {
            "prompt": [_as_text(row, vocab) for row in data["prompt"]],
            "chosen": [" " + _as_text(row, vocab) for row in data["chosen"]],
            "rejected": [" " + _as_text(row, vocab) for row in data["rejected"]],
        }
    )


def trl_config(spec: dict[str, Any], pairs: int, max_length: int, output_dir: str) -> Any:
    """DPOConfig for N `pairs` per step, rows of at most `max_length` tokens (no truncation)."""
    from trl import DPOConfig

    options = {}
    if spec["trl_gradient_checkpointing"] != "default":
        options["gradient_checkpointing"] = spec["trl_gradient_checkpointing"] == "on"
    return DPOConfig(
        output_dir=output_dir,
        per_device_train_batch_size=pairs,
        gradient_accumulation_steps=1,
        max_steps=spec["warmup"] + spec["steps"],
        learning_rate=spec["lr"],
        lr_scheduler_type="constant",
        beta=BETA,
        loss_type=["sigmoid"],
        max_length=max_length,
        bf16=spec["bf16"],
        use_cpu=spec["device"] == "cpu",
        report_to="none",
        logging_strategy="no",
        save_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        train_sampling_strategy="sequential",  # the same batches, in the same order, as lalm's side
        seed=spec["seed"],
        **options,
    )


def build_trl_trainer(
    llm: Any,
    data: dict[str, torch.Tensor],
    config: Any,
    first_input_ids: torch.Tensor,
    on_step_begin: Callable[[], None],
    on_step_end: Callable[[dict[str, float]], None],
) -> Any:
    """DPOTrainer on `llm` (already on its device) that calls on_step_begin() before each step and
    on_step_end({loss, logps_chosen}) after it, and fails unless its first batch is `first_input_ids`."""
    from transformers import PrinterCallback, TrainerCallback
    from trl import DPOTrainer

    vocab = llm.config.vocab_size
    last: dict[str, float] = {}

    class RecordingDPOTrainer(DPOTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001, ANN202
            if self.state.global_step == 0 and not torch.equal(inputs["input_ids"].cpu(), first_input_ids):
                shape = tuple(inputs["input_ids"].shape)
                raise RuntimeError(f"TRL's first batch {shape} is not ours {tuple(first_input_ids.shape)}")
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            last.update(loss=float(loss.detach()), logps_chosen=self._metrics["train"]["logps/chosen"][-1])
            return loss

    class Lockstep(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
            on_step_begin()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
            on_step_end(last)

    trainer = RecordingDPOTrainer(
        model=llm,
        # TRL's default reference reloads the policy from model.config's path; ours exists only in
        # memory, so the same thing (a frozen copy of the initial weights, run every step) is made here.
        ref_model=copy.deepcopy(llm),
        args=config,
        train_dataset=_text_dataset(data, vocab),
        processing_class=_word_tokenizer(vocab),
        callbacks=[Lockstep()],
    )
    trainer.remove_callback(PrinterCallback)  # with tqdm off it prints the final metrics
    return trainer
