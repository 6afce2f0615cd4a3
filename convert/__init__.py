"""Workstation: int8 quantization, evaluation and bundle writing (needs the ``train`` extra)."""
