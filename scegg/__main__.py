"`python -m scegg ...` runs the `scegg` command (hand-written, like __init__.py; the command lives in scegg.cli)."
import sys

from scegg.cli import main

if __name__ == '__main__': sys.exit(main())
