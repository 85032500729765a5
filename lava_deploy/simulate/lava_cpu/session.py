"""Ending a Lava run's processes without leaving its shared memory in /dev/shm.

Lava's CPU runtime passes spikes through POSIX shared-memory segments
(Python's ``psm_*``), which the process that builds the runtime creates and
holds: an open descriptor while it makes one, a mapping afterwards (Linux
names both in /proc). Lava's own stop() unlinks them through its
shared-memory manager; a run that ends any other way (a signal, a failed
process model, a kill) must unlink them itself, or they stay until the
machine restarts.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Iterable, Optional, Union

#: Where Linux keeps POSIX shared memory, and how Python's multiprocessing.shared_memory names its segments
#: (Lava's channels are such segments).
_SEGMENT = "/dev/shm/psm_"


def held_segments(pid: Union[int, str] = "self") -> Optional[set[str]]:
    """Paths of the ``psm_*`` segments that process ``pid`` maps or has open, and that are still linked.

    None where /proc cannot tell: not Linux, or the process is gone.
    """
    proc = Path(f"/proc/{pid}")
    try:
        maps = (proc / "maps").read_text().splitlines()
        descriptors = list((proc / "fd").iterdir())
    except OSError:
        return None
    held = {_SEGMENT + line.rpartition(_SEGMENT)[2] for line in maps if _SEGMENT in line}
    for descriptor in descriptors:
        try:
            held.add(os.readlink(descriptor))
        except OSError:     # closed meanwhile
            continue
    return {path for path in held if path.startswith(_SEGMENT) and not path.endswith(" (deleted)")}


def unlink_segments(paths: Iterable[str]) -> None:
    """Unlink each segment; one mapped stays usable until its processes end, and none is left after them."""
    for path in paths:
        try:
            os.unlink(path)
        except OSError:     # unlinked meanwhile, by Lava's own stop() or by the run's other side
            pass


def kill_session(leader: int) -> None:
    """SIGKILL every process of the group that ``leader`` leads (a Lava run's session), after unlinking the
    segments the leader holds.

    The group is stopped first (SIGSTOP), so that no segment is made between the look and the kill.
    """
    try:
        os.killpg(leader, signal.SIGSTOP)
    except (ProcessLookupError, PermissionError):       # nothing of it is left, or it is not ours
        return
    unlink_segments(held_segments(leader) or ())
    os.killpg(leader, signal.SIGKILL)
