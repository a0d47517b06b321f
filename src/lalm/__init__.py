"""lalm: train large audio-language models in three stages (pretrain, SFT, DPO) the Qwen2-Audio way."""

__version__ = "0.1.0"
