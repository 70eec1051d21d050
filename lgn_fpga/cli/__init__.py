"""The ``lgn-fpga`` command line.

Each subcommand lives in its own module and is imported only when used, so
``lgn-fpga --help`` stays fast and a command never pays for another's imports
(no torch behind ``stream``, no amaranth behind ``train``).
"""
from __future__ import annotations

import importlib
import sys

import click

from .. import __version__
from ..errors import LgnError

# name -> "module:attribute"; a new command adds one line here.
COMMANDS = {
    "train": "lgn_fpga.cli.train:train",
    "info": "lgn_fpga.cli.train:info",
    "plot": "lgn_fpga.cli.train:plot",
    "report": "lgn_fpga.cli.report:report",
    "export": "lgn_fpga.cli.netlist:export",
    "import": "lgn_fpga.cli.netlist:import_cmd",
    "eval": "lgn_fpga.cli.netlist:eval_cmd",
    "stats": "lgn_fpga.cli.netlist:stats",
    "hdl": "lgn_fpga.cli.hdl:hdl",
    "build": "lgn_fpga.cli.board:build",
    "flash": "lgn_fpga.cli.board:flash_cmd",
    "stream": "lgn_fpga.cli.board:stream",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        mod, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(mod), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(version=__version__, prog_name="lgn-fpga", message="%(prog)s %(version)s")
def cli():
    """Train logic gate networks and put them on open-source FPGA boards.

    \b
    Typical flow:
      lgn-fpga train digits --config digits-tiny                # -> runs/<name>/
      lgn-fpga export runs/<name> -o model.lgn                  # optimized netlist
      lgn-fpga build model.lgn --board icebreaker               # bitstream + report
      lgn-fpga flash --board icebreaker; lgn-fpga stream --port /dev/ttyUSB1
    """


def main(argv=None):
    """Entry point: user errors become one line on stderr and a non-zero exit."""
    try:
        cli.main(args=argv, prog_name="lgn-fpga", standalone_mode=False)
    except LgnError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except OSError as e:
        # Missing files, full disks, busy serial ports: say which and stop.
        click.echo(f"error: {e.strerror or e}{': ' + str(e.filename) if getattr(e, 'filename', None) else ''}", err=True)
        sys.exit(1)
