"""Measuring: latency, memory and stages of a model on this machine, and the reports."""
