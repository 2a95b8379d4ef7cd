"""Progress for long waits on the command line: a transaction on a public network can take a
block time or more, and a silent terminal looks hung.

    with waiting("stake"):
        provider.stake(market, amount)      # "stake: waiting for the chain (3 s)" on stderr, then every 10 s

Nothing is printed when the wait is short (the first notice comes after ``first_notice_s``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import click

__all__ = ["FIRST_NOTICE_S", "REPEAT_S", "waiting"]

FIRST_NOTICE_S = 3.0
REPEAT_S = 10.0


@contextmanager
def waiting(label: str, *, first_notice_s: float = FIRST_NOTICE_S, repeat_s: float = REPEAT_S) -> Iterator[None]:
    """Says on stderr how long ``label`` has been waiting, once it takes long."""
    done = threading.Event()

    def tell() -> None:
        waited = first_notice_s
        if done.wait(first_notice_s):
            return
        while True:
            click.echo(f"{label}: waiting for the chain ({waited:.0f} s)", err=True)
            if done.wait(repeat_s):
                return
            waited += repeat_s

    teller = threading.Thread(target=tell, name=f"progress {label}", daemon=True)
    teller.start()
    try:
        yield
    finally:
        done.set()
        teller.join()
