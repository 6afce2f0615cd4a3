"""The machine edgecls runs on: board and CPU probes, memory, signals, and bounded file reads."""
