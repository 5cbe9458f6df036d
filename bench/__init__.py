"""Benchmark harness: raw ONNX Runtime limit, ninserve and peer servers under the same load."""
