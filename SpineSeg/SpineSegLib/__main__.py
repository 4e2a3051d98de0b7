import sys

from SpineSegLib.cli import main

sys.exit(main())
