"""haloterm.engine."""
