"""Benchmark: the audio encoder on the full window (transformers' forward) vs the batch's real length.

    python scripts/bench_encoder.py                        # GPU: Qwen2-Audio's encoder (Whisper-large-v3 size)
    python scripts/bench_encoder.py --preset qwen2-audio   # the same on CPU (slow); the CPU default is tiny

Random weights (the cost does not depend on them), one batch of clips of `--seconds` each in a 30-s
window. Prints forward and forward+backward time per batch for both, and the largest difference of the
outputs at real positions (they must agree: padded frames are masked out of attention either way).
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import Qwen2AudioEncoderConfig
from transformers.models.qwen2_audio.modeling_qwen2_audio import Qwen2AudioEncoder

from lalm.data.chat import audio_token_count
from lalm.models.encoder import encoder_attention_mask, make_length_aware, trim_features

PRESETS = {
    # Qwen2-Audio-7B's audio tower: Whisper-large-v3's encoder (32 layers, 1280 wide, 128 mel bins).
    "qwen2-audio": {
        "encoder_layers": 32,
        "d_model": 1280,
        "encoder_attention_heads": 20,
        "encoder_ffn_dim": 5120,
    },
    "tiny": {"encoder_layers": 3, "d_model": 192, "encoder_attention_heads": 4, "encoder_ffn_dim": 768},
}


def _inputs(
    config: Qwen2AudioEncoderConfig, batch: int, seconds: float, device: str
) -> tuple[torch.Tensor, torch.Tensor]:
    window = config.max_source_positions * 2
    features = torch.randn(batch, config.num_mel_bins, window, device=device)
    mask = torch.zeros(batch, window, dtype=torch.long, device=device)
    mask[:, : int(seconds * 100)] = 1  # 100 mel frames per second
    return features, mask


def _time(step, repeats: int, device: str) -> float:  # noqa: ANN001
    step()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    gpu = torch.cuda.is_available()
    # The 32-layer encoder takes minutes per batch on a few CPU cores: the tiny one is the CPU default.
    parser.add_argument("--preset", choices=sorted(PRESETS), default="qwen2-audio" if gpu else "tiny")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if gpu else "cpu")
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default=None)
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype or ("bfloat16" if args.device == "cuda" else "float32"))
    config = Qwen2AudioEncoderConfig(num_mel_bins=128, max_source_positions=1500, **PRESETS[args.preset])
    stock = Qwen2AudioEncoder(config).to(args.device, dtype)
    aware = Qwen2AudioEncoder(config).to(args.device, dtype)
    aware.load_state_dict(stock.state_dict())
    make_length_aware(aware)
    features, mask = _inputs(config, args.batch, args.seconds, args.device)
    short_features, short_mask = trim_features(features, mask)
    runs = {
        "full window": (stock, features.to(dtype), encoder_attention_mask(config, mask, dtype)),
        "real length": (aware, short_features.to(dtype), encoder_attention_mask(config, short_mask, dtype)),
    }
    print(
        f"encoder {args.preset}, batch {args.batch} x {args.seconds:g} s in a 30-s window, "
        f"{args.device} {dtype}"
    )
    outputs = {}
    for name, (encoder, x, attention) in runs.items():
        with torch.no_grad():
            outputs[name] = encoder(x, attention_mask=attention).last_hidden_state.float()
            forward = _time(
                lambda e=encoder, x=x, a=attention: e(x, attention_mask=a), args.repeats, args.device
            )
        train = _time(
            lambda e=encoder, x=x, a=attention: (
                e(x, attention_mask=a).last_hidden_state.float().sum().backward()
            ),
            args.repeats,
            args.device,
        )
        print(
            f"  {name:12s} {x.shape[-1]:5d} mel frames: forward {forward:9.1f} ms, forward+backward {train:9.1f} ms"
        )
    real = audio_token_count(int(mask.sum(-1).max()))
    diff = (outputs["real length"][:, :real] - outputs["full window"][:, :real]).abs().max().item()
    print(f"  largest output difference at real positions: {diff:.3g}")


if __name__ == "__main__":
    main()
