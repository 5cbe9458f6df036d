#!/bin/sh
# Regenerate the committed Python code from inference.proto (grpcio-tools is in the dev extra):
#     sh app/grpc/proto/generate.sh
# Run from anywhere; the imports it writes are package-absolute (app.grpc.proto.inference_pb2).
set -eu
cd "$(dirname "$0")/../../.."
"${PYTHON:-.venv/bin/python}" -m grpc_tools.protoc -I . \
    --python_out=. --pyi_out=. --grpc_python_out=. app/grpc/proto/inference.proto
# The messages go into a descriptor pool of their own, not protobuf's default one: the clients that
# share a process with the server (tritonclient, KServe's, in tests and embedders) register the same
# `inference.*` names there, and a second registration of a name is an error.
sed -i 's/_descriptor_pool.Default().AddSerializedFile/_descriptor_pool.DescriptorPool().AddSerializedFile/' \
    app/grpc/proto/inference_pb2.py
