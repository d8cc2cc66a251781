from snnbp.cli import main

raise SystemExit(main())
