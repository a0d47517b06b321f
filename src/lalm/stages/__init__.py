"""Stages as small plug-ins of the trainer: what trains, and how a batch becomes a loss."""
