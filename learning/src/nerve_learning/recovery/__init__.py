"""The recovery model of `nerverecover`: its contract, crops from the real RTP loss pipeline,
training, replay and export (train)."""
