"""Turn a kernel's files into a small facts extract for tests:

    python -m pageref.tracer.fixture --btf vmlinux.btf --symbols System.map \\
        [--headers DIR] [--config FILE] [--filter-functions FILE] --release R \\
        -o tests/fixtures/kernels/<gen>

Keeps only the symbols, BTF prototypes, offsets and enum values the probe plan
and the BPF defines use (a few kB instead of megabytes of BTF). `--live` takes
the running kernel instead. Symbols may be a System.map, /proc/kallsyms, or
`nm` of an ELF recovered from a vmlinuz (vmlinux-to-elf) when the distribution
ships only a placeholder System.map.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pageref.tracer.facts import KernelFacts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pageref.tracer.fixture")
    ap.add_argument("--btf", type=Path)
    ap.add_argument("--symbols", type=Path)
    ap.add_argument("--headers", type=Path)
    ap.add_argument("--config", type=Path)
    ap.add_argument("--filter-functions", type=Path)
    ap.add_argument("--release")
    ap.add_argument("--live", action="store_true", help="the running kernel")
    ap.add_argument("-o", "--out", type=Path, required=True, help="fixture directory")
    a = ap.parse_args(argv)
    if a.live:
        facts = KernelFacts.live()
    else:
        facts = KernelFacts.from_files(a.btf, a.symbols, a.headers, a.config, a.release,
                                       a.filter_functions)
    facts.source = "fixture"
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "facts.json").write_text(facts.to_json())
    print(f"{a.out / 'facts.json'}: {len(facts.symbols)} symbols, {len(facts.btf_funcs)} "
          f"prototypes, {len(facts.offsets)} offsets")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
