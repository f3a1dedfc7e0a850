"""``python -m geep_deploy.cli``: the same as the ``geep-deploy`` command."""

from geep_deploy.cli import main

raise SystemExit(main())
