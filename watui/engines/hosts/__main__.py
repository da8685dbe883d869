"""``python -m watui.engines.hosts``: an engine host process (watui starts these itself).

The engine spec comes in the environment (``WATUI_ENGINE_HOST_SPEC``), not on the command
line, where any local user could read a database URL with its password."""

import sys

from watui.engines.hosts.host import main

main(sys.argv)
