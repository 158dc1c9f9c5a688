"""The audits as Inspect AI tasks, eval logs as evidence, and the verdict from a set of logs
(docs/inspect.md).

    tasks     `text.text_audit`, `text.lm_audit` (text models, e.g. through Inspect's `hf`
              provider), `world.world_audit` (world models, through `provider`)
    logs      read our `.eval` logs back into per-item arrays; `verdict_from_logs`
    write     the pipeline's logs (`--inspect-logs DIR`) and the report's links to them

Inspect finds the tasks and the provider through the `inspect_ai` entry point (`_registry`).
"""

from incriminate.evals.logs import read_logs, verdict_from_logs
from incriminate.evals.text import lm_audit, text_audit
from incriminate.evals.world import world_audit

__all__ = ["lm_audit", "read_logs", "text_audit", "verdict_from_logs", "world_audit"]
