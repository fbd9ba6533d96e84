"""nerve's learning side: datasets made with the real streaming degradation, training,
distillation and export of the models that the GStreamer elements run."""

__version__ = "0.1.0"
