"""The `incriminate` command: thin commands over the plan engine (`incriminate.plan`) and the
report writers (`incriminate.report`); `main` is the console script."""
