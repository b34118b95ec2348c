"""Dispatchers move claimed executions to where they run."""

from taskmgr.dispatch.base import DispatchContext, Dispatcher, Runtime
from taskmgr.dispatch.inline import InlineDispatcher

__all__ = ["DispatchContext", "Dispatcher", "InlineDispatcher", "Runtime"]
