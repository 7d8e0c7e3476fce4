"""`pageref lab kernels`: fetch the lab's kernel generations ahead of time.

A thin command over pageref.lab.kernel_facts.prefetch (and, with --debug,
pageref.lab.debug_kernel.build_debug_kernel); the lab group adds it with
`lab.add_command(kernels)`.
"""

from __future__ import annotations

import json

import click

from pageref.lab.debug_config import DEBUG_GENERATIONS
from pageref.lab.kernels import DEFAULT_LAB_KERNELS, GENERATIONS


@click.command("kernels")
@click.option("--kernel", "kernels", multiple=True, type=click.Choice(GENERATIONS),
              help="Generation to fetch (repeatable; default: "
                   f"{', '.join(DEFAULT_LAB_KERNELS)}, the ones the lab tests boot).")
@click.option("--refresh", is_flag=True,
              help="Ask the archive again and fetch a newer build of a series if it has one.")
@click.option("--debug", is_flag=True,
              help=f"Build the debug kernel ({', '.join(DEBUG_GENERATIONS)}) from Debian's "
                   "linux-source package: page_ref tracepoints, device-private pages, "
                   "test_hmm, gup_test, BTF. About 9 min on 2 quiet cores the first time; "
                   "then only checked.")
@click.option("--jobs", type=click.IntRange(1), default=None,
              help="make -j for --debug (default: every CPU).")
@click.option("--boot", is_flag=True,
              help="Also boot each kernel once to record its kallsyms, "
                   "available_filter_functions, kprobe blacklist and BCC compile time.")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
def kernels(kernels: tuple[str, ...], refresh: bool, debug: bool, jobs: int | None,
            boot: bool, as_json: bool) -> None:
    """Download and unpack the lab's kernels (5.10 bullseye-security, 6.1 host,
    6.12 trixie, 7.2 sid/trixie-backports, newest: whatever Debian serves newest).

    \b
    Each generation takes the newest build of its series the archive serves
    and says which; nothing is pinned. They come from the host's Debian mirror
    (and security.debian.org for bullseye-security) through a private apt
    configuration under lab-cache/apt/ (the host's apt sources are never
    changed, nothing is installed), unpacked into lab-cache/kernels/<gen>/.
    A second run does nothing unless --refresh. Facts for the tracer's
    fixtures (raw BTF, config; with --boot the symbols) go to
    lab-cache/kernels/<gen>/facts/.

    \b
    --debug builds 6.12-debug instead (alone, unless --kernel names others
    too) into ~/.cache/pageref/kernels/ ($PAGEREF_SHARED_CACHE), shared by
    every checkout on the machine and keyed by the source package's version
    and the config; progress goes to stderr.
    """
    from pageref.lab.kernel_facts import prefetch

    wanted = list(kernels)
    if debug:
        from pageref.lab.debug_kernel import build_debug_kernel

        for gen in DEBUG_GENERATIONS:
            build_debug_kernel(gen, jobs=jobs)
            if gen not in wanted:
                wanted.append(gen)
    done = prefetch(wanted or DEFAULT_LAB_KERNELS, boot=boot, refresh=refresh)
    if as_json:
        click.echo(json.dumps(done, indent=1))
        return
    for gen, info in done.items():
        line = f"{gen:6} {info['release']:26} facts {info['facts']}"
        if boot:
            line += f"  boot {info['boot_s']} s, BCC compile+attach {info['bcc_s']} s"
        click.echo(line)
