import sys

from anovit.cli import main

sys.exit(main())
