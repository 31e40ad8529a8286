"""Entrypoint for `ray job submit --working-dir . -- python jobs/score.py CONFIG [--fresh]`.

Inside a Ray job RAY_ADDRESS is set, so the pipeline joins the cluster.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from synque_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["score", *sys.argv[1:]]))
