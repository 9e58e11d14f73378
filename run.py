#!/usr/bin/env python
"""The release's entry point, same flags: train with --is_train, evaluate without it.

    python run.py --source_dataset gta5 --source_dataroot DIR --target_dataset cityscapes \\
        --target_dataroot DIR --name NAME --gpu_ids 0 --is_train --num_shots 1
    python run.py ... --name NAME --which_iter 30000        # evaluate step 30000 of NAME

`python run.py --help` lists every option; `python -m pixda_core {pretrain,adapt,evaluate}`
takes the same ones.
"""

import sys

from pixda_core.train.cli import run_main

if __name__ == "__main__":
    sys.exit(run_main())
