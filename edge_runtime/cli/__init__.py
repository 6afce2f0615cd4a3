"""The edgecls command: every argparse parser and every print."""
