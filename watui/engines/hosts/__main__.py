"""``python -m watui.engines.hosts SPEC``: an engine host process (watui starts these itself)."""

import sys

from watui.engines.hosts.host import main

main(sys.argv)
