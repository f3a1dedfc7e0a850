"""Inference backends behind one protocol: ONNX Runtime, torch and TensorRT (each imports its library lazily)."""
