"""haloterm.widgets."""
