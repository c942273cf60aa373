"""`python -m mmlib ...` is the `makemore` command (see mmlib.cli)."""

from mmlib.cli import main

raise SystemExit(main())
