"""``python -m infra [up|down|status]``: the local stack without Docker (see :mod:`infra.stack`)."""
from .stack import main

raise SystemExit(main())
