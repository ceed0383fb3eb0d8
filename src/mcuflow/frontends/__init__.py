"""Model readers and writers: TFLite (flatbuffers) and ONNX."""
