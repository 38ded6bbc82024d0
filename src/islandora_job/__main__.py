"""`python -m islandora_job`: the `islandora-job` command (how detached workers are started)."""

import sys

from islandora_job.cli import main

if __name__ == "__main__":
    sys.exit(main())
