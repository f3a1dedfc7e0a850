"""Export compiler: per-depth ONNX with shared weights, precision variants, TensorRT plans and a checked manifest."""
