"""haloterm.plugins."""
