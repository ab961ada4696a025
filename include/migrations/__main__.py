"""``python -m include.migrations ARGS``: Alembic's command line on the application database.

Examples: ``python -m include.migrations current``; ``python -m include.migrations revision
--autogenerate --rev-id 0002 -m "add sticker_order.note"``; ``python -m include.migrations upgrade head``.
"""

from __future__ import annotations

import sys

from alembic.config import CommandLine

from include.migrations import config


def main(argv: list[str] | None = None) -> None:
    cli = CommandLine(prog="python -m include.migrations")
    options = cli.parser.parse_args(argv)
    if not hasattr(options, "cmd"):
        cli.parser.error("too few arguments")
    cli.run_cmd(config(), options)


if __name__ == "__main__":
    main(sys.argv[1:])
