"""The only place that reads and edits ONNX protos: loading, layer discovery, weight views."""
