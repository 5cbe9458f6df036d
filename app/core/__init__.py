"""The core: image bytes -> pixels -> batches -> ONNX Runtime -> scores and maps; no web framework."""
