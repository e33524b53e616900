"""``python -m temtrack_gui [MOVIE]``."""
from temtrack_gui.app import main

raise SystemExit(main())
