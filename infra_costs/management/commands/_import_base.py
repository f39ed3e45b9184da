"""Shared body of `import_pools`, `import_uptime` and `import_jobs`."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from infra_costs import services
from infra_costs.imports import ImportRefused, open_csv
from infra_costs.imports.results import rows_word
from infra_costs.progress import Progress


class ImportCommand(BaseCommand):
    kind = ""  # pools | uptime | jobs

    def add_arguments(self, parser):
        parser.add_argument("file", metavar="FILE", help="CSV file (`-` reads standard input).")
        parser.add_argument(
            "--skip-invalid",
            action="store_true",
            help="Import the good rows and report the bad ones (default: a file with any bad "
            "line is refused whole and nothing is written).",
        )
        parser.add_argument(
            "--no-progress", action="store_true", help="No progress line on standard error."
        )

    def handle(self, *args, **options):
        importer = services.CSV_IMPORTS[self.kind]
        progress = Progress(
            f"import_{self.kind}", stream=self.stderr._out, enabled=not options["no_progress"]
        )
        started = time.monotonic()
        try:
            stream = open_csv(options["file"])
        except OSError as exc:
            raise CommandError(f"Cannot read {options['file']}: {exc.strerror}") from None
        try:
            with stream:
                result = importer(
                    stream=stream, skip_invalid=options["skip_invalid"], progress=progress
                )
        except ImportRefused as exc:
            progress.close()
            for line in exc.result.error_lines():
                self.stderr.write(line)
            raise CommandError(
                f"refused: {exc.result.invalid} invalid {rows_word(exc.result.invalid)} — "
                "nothing was imported (fix them, or use --skip-invalid)"
            ) from None
        progress.close()
        for line in result.error_lines():
            self.stderr.write(f"skipped {line}")
        elapsed = time.monotonic() - started
        self.stdout.write(f"{result.summary()} ({elapsed:.1f} s)")
