"""Continual learning: EWC, replay and the 10-task benchmark that measures forgetting, plasticity
and transfer (benchmark)."""
