"""haloterm.automation."""
