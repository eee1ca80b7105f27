"""`hcp font build`: the keypad's bitmap font for exactly the glyphs its
screens and its staff roster need (tools/fontgen.py does the work)."""

from __future__ import annotations

from tools import fontgen


def register(commands) -> None:
    font = commands.add_parser("font", help="the keypad display's bitmap font")
    actions = font.add_subparsers(dest="font_command", metavar="ACTION")
    actions.required = True
    build = actions.add_parser(
        "build", help="build the font file from the firmware's texts and a staff roster"
    )
    fontgen.add_arguments(build)
    build.set_defaults(handler=fontgen.run)
