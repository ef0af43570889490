"""The one kind of error a user can fix: every stage answers it with its message and exit code 2, no
traceback (stages.run_stage). Bad data, config, weights, paths, a busy or missing run: each of their
classes is a UserError as well as the built-in kind it was before (ValueError, FileNotFoundError, ...)."""
from __future__ import annotations


class UserError(Exception):
    """Something the user typed or gave cannot be used; the message names the file and what is wrong."""


class NotFound(UserError, FileNotFoundError):
    """A run, file or output a stage was pointed at is not there (or not finished)."""


class Exists(UserError, FileExistsError):
    """What a stage would write is there already (nothing is written over)."""
