"""Stages as small plug-ins of the trainer: what trains, and how a batch becomes a loss.

Everything that differs by stage (config class, record format, example, collator, Stage factory,
data checks) is registered once in lalm.stages.registry.
"""
