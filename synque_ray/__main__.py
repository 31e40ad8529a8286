import sys

from synque_ray.cli import main

sys.exit(main())
