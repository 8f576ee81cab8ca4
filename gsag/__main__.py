import sys

from gsag.cli import main

sys.exit(main())
