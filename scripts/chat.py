"""Talk to a checkpoint: python scripts/chat.py checkpoint=DIR [audio=[a.wav]] ['text="What is said?"'].

Compose (Hydra, typed) -> read the clips given -> load the model -> answer, streaming tokens to stdout.
One-shot when text or audio is given; otherwise a conversation over the lines of stdin (`@a.wav`
attaches a clip, /reset, /quit; see lalm.eval.chat). Bad input ends a one-shot call with exit code 78.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from lalm.config.store import register_configs
from lalm.errors import LalmInputError
from lalm.eval.chat import run_chat
from lalm.training.exits import EXIT_CONFIG

register_configs()


@hydra.main(version_base=None, config_path="../configs", config_name="chat")
def main(cfg: DictConfig) -> None:
    chat_cfg = OmegaConf.to_object(cfg)
    try:
        run_chat(chat_cfg, sys.stdin, sys.stdout, sys.stderr)
    except (LalmInputError, FileNotFoundError) as error:
        print(f"lalm chat: {error}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)


if __name__ == "__main__":
    main()
