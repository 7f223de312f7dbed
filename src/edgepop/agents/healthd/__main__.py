import sys

from edgepop.agents.healthd.cli import main

sys.exit(main())
