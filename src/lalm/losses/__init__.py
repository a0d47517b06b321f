"""Pure loss functions: per-token log-probabilities and the next-token loss (token), and the DPO family of
preference losses with their TRL-named metrics (preference)."""
