from lava_deploy.cli import main
import sys
sys.exit(main())
