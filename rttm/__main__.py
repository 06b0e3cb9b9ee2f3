"""``python -m rttm`` is the ``rttm`` command."""

from rttm.cli.main import main

raise SystemExit(main())
