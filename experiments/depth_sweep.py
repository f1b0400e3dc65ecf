"""Run the depth sweep (same as `ntk-bridge depth-sweep`; see --help)."""

import sys

from ntk_bridge.commands.cli import main

if __name__ == "__main__":
    sys.exit(main(["depth-sweep", *sys.argv[1:]]))
