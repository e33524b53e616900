import sys

from temtrack.cli import main

sys.exit(main())
