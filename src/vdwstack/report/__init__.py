"""The report stage: figures, tables and a standalone HTML page of a run (no torch needed)."""

from vdwstack.report.stage import write_report

__all__ = ["write_report"]
