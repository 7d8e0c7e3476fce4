"""The `pageref` command: a thin click group over the commands in pageref.commands.

Commands are imported only when invoked, so `pageref --help` stays fast and a
command whose dependencies are missing (bcc on a laptop) cannot break the others.
"""

from __future__ import annotations

import importlib
import sys

import click

from pageref import __version__
from pageref.errors import PagerefError

# name -> (module under pageref.commands, attribute, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "analyze": ("analyze", "analyze", "Find refcount anomalies in a trace."),
    "history": ("history", "history", "Show one page's reference history (table and plot)."),
    "convert": ("convert", "convert", "Convert a trace between Parquet and JSON Lines."),
    "report": ("report", "report", "Write an HTML report: anomalies, page histories, plots."),
    "watch": ("watch", "watch", "Replay a recorded trace through the live view."),
    "record": ("record", "record", "Record references on ZONE_DEVICE pages (root, BPF)."),
    "probes": ("probes", "probes", "Show the probe plan for this kernel (read-only)."),
    "doctor": ("doctor", "doctor", "Check that recording can work on this machine."),
    "lab": ("lab", "lab",
            "The QEMU pmem lab: demo, run a command under the tracer, shell, kernels."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(f"pageref.commands.{module}"), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pageref")
def cli() -> None:
    """Trace and analyse who takes and drops references on ZONE_DEVICE/DAX pages.

    \b
    Typical use:
      sudo pageref record -o run.trace -- ./my-dax-workload   # on a pmem host
      pageref analyze run.trace                               # anywhere, no root
      pageref history run.trace --pfn 0x140018 --plot page.png
      pageref report run.trace -o report.html
      pageref lab demo                                        # no pmem? use the lab

    Traces are Parquet (native) or JSON Lines (interchange); see docs/trace-format.md.
    """


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("pageref: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except PagerefError as e:
        from pageref.trace.text import escape_controls

        # Messages may carry text from a trace or a file name: one line, no
        # control characters reach the terminal.
        click.echo(f"pageref: error: {escape_controls(str(e))}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("pageref: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
