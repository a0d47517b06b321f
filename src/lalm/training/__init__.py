"""The shared trainer: one loop for every stage, on DeepSpeed."""
