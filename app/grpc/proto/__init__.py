"""inference.proto and the code protoc generates from it (generate.sh); not edited by hand."""
