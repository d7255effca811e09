"""``python -m neurosim.experiments``: run the notebooks (see :mod:`neurosim.experiments.notebooks`)."""

from neurosim.experiments.notebooks import main

raise SystemExit(main())
