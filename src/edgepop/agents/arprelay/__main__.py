import sys

from edgepop.agents.arprelay.cli import main

sys.exit(main())
