"""Workstation: dataset reading, model building and the fit loop (needs the ``train`` extra)."""
