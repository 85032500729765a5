"""Test-session setup shared by every test file."""
# Lava sets multiprocessing's start method when its runtime module is first imported, which fails once
# anything else (torch, sklearn) has fixed the context: import it first so that in-process Lava tests
# pass in any order.
import lava.magma.runtime.message_infrastructure.multiprocessing  # noqa: F401
