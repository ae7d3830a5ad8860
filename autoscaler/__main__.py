"""Lets `python -m autoscaler` behave like the `autoscaler` console script."""

import sys

from autoscaler import cli

sys.exit(cli.main())
