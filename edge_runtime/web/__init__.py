"""The web view: one HTTP server (limits, Host check) that pages plug into, and the static files."""
