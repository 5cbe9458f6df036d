"""gRPC: the Open Inference Protocol's `inference.GRPCInferenceService` beside HTTP, in the same
process and event loop (server.py: listener and limits; service.py: the calls; tensors.py:
protobuf <-> the V2 codec's tensors; status.py: domain errors -> status codes; proto/: the
protocol's .proto and its generated code)."""
