"""One exception type for mistakes a user can fix, the spelling hint its messages carry, and the guard that
turns it into one line on stderr and an exit status (for the CLI and for every template entry)."""
from __future__ import annotations

import difflib
import os
import sys
import traceback
from typing import Callable, Iterable


class UserError(Exception):
    """Bad input, config or environment. The message names the file/line or key and what was expected."""


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """` (did you mean X?)`: the same name in another case first (ClearML keys are case-sensitive,
    clearml #254), then the closest spelling; empty when nothing is close."""
    options = list(options)
    same = [o for o in options if o.lower() == word.lower() and o != word]
    close = same or difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def run_guarded(fn: Callable[[], int], debug: bool = False) -> int:
    """Run a command: a UserError is one line on stderr and exit status 2, another failure one line and
    status 1 (the traceback with --debug or SLM_DEBUG=1)."""
    debug = debug or os.environ.get("SLM_DEBUG") == "1"
    try:
        return fn()
    except UserError as e:
        if debug:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except RuntimeError as e:
        if debug:
            traceback.print_exc()
        print(f"error: {e} (run with --debug for the traceback)", file=sys.stderr)
        return 1
