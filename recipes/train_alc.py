"""The train program as a script, for ``accelerate launch recipes/train_alc.py ...`` and ``python
recipes/train_alc.py ...``: the program itself ships in the package (:mod:`alc_hf.training.train`, ``alc-hf train``,
``accelerate launch -m alc_hf.training.train``), with every option and its help (``--help``)."""

import sys

from alc_hf.core.program import run_program
from alc_hf.training.train import main

if __name__ == "__main__":
    sys.exit(run_program(main, "train_alc.py"))
