"""bytewax dataflows, one module each, run as `python -m bytewax.run flows.<name>:flow`."""
