"""haloterm: a keyboard-driven terminal console for executable runbooks."""

__version__ = "0.1.0"
