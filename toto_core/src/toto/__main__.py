from toto.cli import main

raise SystemExit(main())
