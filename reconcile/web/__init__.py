"""The web console: upload and check a correction file, get it approved, watch it run."""
