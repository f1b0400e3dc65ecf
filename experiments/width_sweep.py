"""Run the width sweep (same as `ntk-bridge width-sweep`; see --help)."""

import sys

from ntk_bridge.commands.cli import main

if __name__ == "__main__":
    sys.exit(main(["width-sweep", *sys.argv[1:]]))
