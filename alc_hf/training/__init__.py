"""What the training recipe does, as library parts: its configuration (:mod:`~alc_hf.training.config`), LoRA, the
Hub check, loss checkpoints and the end of a run (:mod:`~alc_hf.training.run`). ``recipes/train_alc.py`` tells the
story with them."""
