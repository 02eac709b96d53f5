import sys

from waiter.wait import main

sys.exit(main())
