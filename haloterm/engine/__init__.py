"""The executor: run loop, step state machine, templates, output and the event bus.

Never imports Textual: the console subscribes to :class:`EventBus` events.
"""

from haloterm.engine.runner import Engine, StartError

__all__ = ["Engine", "StartError"]
