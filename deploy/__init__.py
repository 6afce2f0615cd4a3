"""Workstation: sending bundles to devices over SSH."""
