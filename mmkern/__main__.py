"""``python -m mmkern``: the command line (:mod:`mmkern.cli`)."""

from mmkern.cli import main

main(prog_name="mmkern")
