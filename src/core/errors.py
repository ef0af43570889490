"""The one kind of error a user can fix: every stage answers it with its message and exit code 2, no
traceback (stages.run_stage). Bad data, config, weights, paths, a busy or missing run: each of their
classes is a UserError as well as the built-in kind it was before (ValueError, FileNotFoundError, ...)."""
from __future__ import annotations

import difflib


class UserError(Exception):
    """Something the user typed or gave cannot be used; the message names the file and what is wrong."""


class NotFound(UserError, FileNotFoundError):
    """A run, file or output a stage was pointed at is not there (or not finished)."""


class Exists(UserError, FileExistsError):
    """What a stage would write is there already (nothing is written over)."""


def edit_distance(a: str, b: str) -> int:
    """Levenshtein: the fewest letters inserted, deleted or changed to make `a` into `b`."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row, prev = [i], row
        for j, cb in enumerate(b, 1):
            row.append(min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ca != cb)))
    return row[-1]


def closest_names(word: str, known) -> list[str]:
    """What a misspelt name most likely meant: every known name at the fewest edits (two at most: `adamx` ->
    adam, adamax, adamp, adamw), else difflib's closest; [] when nothing is near."""
    by_edits = sorted((edit_distance(word.lower(), k.lower()), k) for k in known)
    nearest = [k for d, k in by_edits if d == by_edits[0][0] and d <= 2] if by_edits else []
    return nearest or difflib.get_close_matches(word, list(known), n=1)


class ConfigError(UserError, ValueError):
    """A recipe file or override that cannot be applied."""
