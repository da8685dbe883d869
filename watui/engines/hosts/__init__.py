"""Engine hosts: engine sessions in supervised child processes (see docs/engine-hosts.md).

:class:`HostedEngine` is what the manager sees; :mod:`.supervisor` runs the processes,
:mod:`.host` is the process itself, :mod:`.wire` the frames between them.
"""

from watui.engines.hosts.engine import CRASH_REASON, HostedEngine, HostedSession

__all__ = ["CRASH_REASON", "HostedEngine", "HostedSession"]
