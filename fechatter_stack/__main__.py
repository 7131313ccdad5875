import sys

from fechatter_stack.cli import main

sys.exit(main())
