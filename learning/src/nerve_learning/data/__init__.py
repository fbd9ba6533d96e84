"""Training and evaluation data: the clips and their split (clips), the real streaming degradation
(degrade), decoded pairs (dataset), frame and picture packs (pack, images) and the on-device
episodic memory (memory)."""
