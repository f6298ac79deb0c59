import sys

from dwnas.cli import main

sys.exit(main())
