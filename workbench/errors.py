"""Workbench exceptions: each names the file, row, column, model or field at fault."""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base class: a problem the user can fix; messages are shown as-is in the app and CLI."""


class ImportError_(WorkbenchError):
    """A workload or outcomes file could not be imported; nothing was written."""


class NotFoundError(WorkbenchError):
    """A named workload, model or policy does not exist."""


class ConflictError(WorkbenchError):
    """A name is already taken (use replace to overwrite)."""


class PolicyError(WorkbenchError):
    """A policy is invalid (unknown model, threshold out of range, empty tiers...)."""


class ReadOnlyError(WorkbenchError):
    """A statement in the read-only SQL box would change data."""
