"""The KServe V2 / Open Inference Protocol: wire format (codec.py) and the served model (model.py)."""
