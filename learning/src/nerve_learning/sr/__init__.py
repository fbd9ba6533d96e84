"""The super-resolution students and teachers (model), their training (train, packtrain), ONNX
export (export), int8 (quantize) and model cards (card)."""
