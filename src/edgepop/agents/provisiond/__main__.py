import sys

from edgepop.agents.provisiond.cli import main

sys.exit(main())
