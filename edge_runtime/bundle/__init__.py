"""The bundle format (read, write, validate), the Classifier that runs a bundle or a bare model, golden photos, verify, inspect."""
