"""The executor: run loop, step state machine, templates, output and the event bus.

Never imports Textual: the console subscribes to :class:`EventBus` events.
"""

from haloterm.engine.runner import ClaimLost, Engine, StartError

__all__ = ["ClaimLost", "Engine", "StartError"]
