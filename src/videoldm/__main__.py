import sys

from videoldm.cli import main

sys.exit(main())
