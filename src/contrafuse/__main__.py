"""``python -m contrafuse`` (and ``torchrun ... -m contrafuse``): the ``contrafuse`` command."""
import sys

from .cli.main import main

sys.exit(main())
