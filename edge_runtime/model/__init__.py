"""One TFLite model: the interpreter, model checks, the input/output contract, labels, pre- and postprocessing."""
