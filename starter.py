"""quotaflow's command line: ``python starter.py --help``.

Admin commands (tenants, projects, plans, pools, configuration) and job commands; see
docs/en/ for what each one does.
"""

from __future__ import annotations

import sys

import cli.admin
import cli.configs
import cli.demo
import cli.jobs
import cli.stack
from cli.app import run

# Importing the command modules registers their commands on the app.
COMMAND_MODULES = (cli.admin, cli.configs, cli.demo, cli.jobs, cli.stack)


def main() -> int:
    return run(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
