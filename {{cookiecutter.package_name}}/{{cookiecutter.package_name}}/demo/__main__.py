"""``python -m {{ cookiecutter.package_name }}.demo``: see :mod:`.run`."""

import sys

from .run import main

sys.exit(main())
