"""The ``mmkern`` command line."""

from __future__ import annotations

import json
import sys

import click

from mmkern._version import __version__
from mmkern.bench import SUITES


class _CleanErrors(click.Group):
    """Report expected failures as one clear line, not a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (ValueError, TypeError, OSError, AssertionError) as e:
            raise click.ClickException(str(e)) from e


@click.group(cls=_CleanErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mmkern")
def main() -> None:
    """mmkern: fast, tested kernels for model multiplicity."""


@main.command()
def info() -> None:
    """Show what this installation was built with (OpenMP, BLAS route, CUDA)."""
    from mmkern import show_config

    show_config()


@main.command()
@click.argument("suite", type=click.Choice(SUITES))
@click.option("--quick", is_flag=True, help="Small sizes: a smoke run of seconds.")
@click.option("--repeat", default=3, show_default=True, type=click.IntRange(1),
              help="Timed runs of mmkern per case (the best counts).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True),
              help="Also write the rows as JSON to this file.")
def bench(suite: str, quick: bool, repeat: int, json_path: str | None) -> None:
    """Time mmkern against its reference implementations on the same data, in one run.

    Results are checked to agree before anything is timed; the table shows both times and the
    speed-up (reference / mmkern).
    """
    from mmkern.bench import format_table, run_case, suite_cases
    from mmkern._config import config

    info = config()
    click.echo(f"mmkern {info['version']} bench {suite}{' --quick' if quick else ''}: "
               f"{info['openmp_threads']} OpenMP threads, BLAS via SciPy {info['scipy']}")
    rows = []
    for case in suite_cases(suite, quick):
        rows.append(run_case(case, repeat=repeat, progress=lambda msg: click.echo(f"  .. {msg}", err=True)))
    click.echo(format_table(rows))
    if json_path:
        from mmkern._io import atomic_write_text

        payload = [dict(name=r.name, reference_s=r.reference_s, mmkern_s=r.mmkern_s, speedup=r.speedup,
                        target=r.target, meets_target=r.meets_target, max_rel_diff=r.max_rel_diff,
                        notes=r.notes) for r in rows]
        atomic_write_text(json_path, json.dumps(payload, indent=2))
    missed = [r.name for r in rows if r.meets_target is False]
    if missed:
        click.echo(f"targets missed: {', '.join(missed)}", err=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
