"""The core: image bytes -> pixels -> batches -> ONNX Runtime -> scores and maps, and the loaded
version a request holds (served.py); no web framework, nothing of the repository or serving layers."""
