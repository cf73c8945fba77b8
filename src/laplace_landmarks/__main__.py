from laplace_landmarks.cli import main

raise SystemExit(main())
