import sys

from edgepop.agents.recoveryd.cli import main

sys.exit(main())
