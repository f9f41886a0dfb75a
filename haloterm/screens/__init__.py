"""haloterm.screens."""
