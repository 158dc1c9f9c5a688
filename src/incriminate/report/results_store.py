"""The results store: every experiment's metrics as rows of a Parquet dataset in the artifact
store, queried with SQL (DuckDB reads the files in place).

    STORE/results/verdicts/<config_hash>.parquet        one row per experiment
    STORE/results/configurations/<config_hash>.parquet  one row per (configuration, metric)
    STORE/results/runs/<config_hash>.parquet            one row per (run, metric)
    STORE/results/bench/<config_hash>.parquet           one row per (zoo organism, procedure)

Each experiment (a demo, a `distill`, a sweep point, a bench) appends its files; a file is
written under a temporary name and renamed, so a reader or a killed writer never sees half of
one, and an experiment run twice writes the same bytes again. Every row carries the experiment's
resolved config as `config.<field>` columns (`config.teacher`, `config.build.preset`, ...), so
any field a sweep varies can be grouped by. Metric rows: `metric` (an audit or ground-truth
name), `kind` (`audit` | `ground_truth`); configurations hold `teacher`, `control`, `difference`
with its CI and the one-sided `p_value` over seeds; runs hold the student's `rate` with its `n`
and CI. Bench rows: the organism's manifest fields (`organism`, `class`, `group`, `drive`,
`base_seed`, `label`), the `procedure` (`direct`, `battery/NAME`, `config/METHOD/DATA/INIT`) and
its `p_value`, `statistic`, `decision` and `margin` (`report.bench_results`); in SQL, `"group"`
is quoted (a keyword).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

TABLES = ("configurations", "runs", "verdicts", "bench")
VALUES = {
    "configurations": ("difference", "teacher", "control", "ci_low", "ci_high", "p_value"),
    "runs": ("rate", "ci_low", "ci_high", "first_loss", "final_loss"),
    "verdicts": ("p_value", "statistic"),
    "bench": ("p_value", "statistic", "reference_mean"),
}
"""Numeric columns a grouped query averages; the first gets a 95% t-interval over the rows."""
FOLDER = "results"


class QueryError(ValueError):
    """A query the results store cannot answer (reported as one line)."""


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}", v, out)
    elif isinstance(value, list):
        out[prefix] = ",".join(
            str(v) if not isinstance(v, dict) else v.get("method", v.get("name", str(v)))
            for v in value
        )
    else:
        out[prefix] = value


def config_columns(config: dict[str, Any]) -> dict[str, Any]:
    """The resolved config as flat `config.<dotted field>` columns (lists joined by commas;
    methods and batteries by name)."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        _flat(f"config.{k}", v, out)
    return out


def rows(results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The rows of each table for one results document (`report.results`) or bench document
    (`report.bench_results`)."""
    if str(results.get("schema", "")).startswith("incriminate.bench/"):
        return {"bench": bench_rows(results)}
    exp = {"experiment": results["config_hash"]}
    cfg = config_columns(results["config"])
    v = results["verdict"]
    verdicts = [
        exp
        | {k: v[k] for k in ("decision", "p_value", "statistic", "n_pairs", "n_clusters")}
        | {"alpha": v["alpha"], "teacher": results["teachers"]["teacher"]["name"]}
        | cfg
    ]
    configurations = []
    for c in results["configurations"]:
        where = {"configuration": c["name"], "method": c["method"], "data": c["data"]}
        where |= {"init": c["init"], "seeds": c["seeds"]}
        for kind, block in (("audit", c["audits"]), ("ground_truth", c["ground_truth"])):
            for metric, a in block.items():
                configurations.append(
                    exp
                    | where
                    | {"metric": metric, "kind": kind}
                    | {"teacher": a["teacher"]["rate"], "control": a["control"]["rate"]}
                    | {k: a[k] for k in ("difference", "ci_low", "ci_high", "p_value")}
                    | cfg
                )
    runs = []
    for r in results["runs"]:
        where = {k: r[k] for k in ("method", "data", "init", "seed", "role", "student")}
        where |= {"first_loss": r["first_loss"], "final_loss": r["final_loss"]}
        for kind, block in (("audit", r["audits"]), ("ground_truth", r["ground_truth"])):
            for metric, a in block.items():
                runs.append(
                    exp
                    | where
                    | {"metric": metric, "kind": kind}
                    | {k: a[k] for k in ("rate", "n", "ci_low", "ci_high")}
                    | cfg
                )
    return {"verdicts": verdicts, "configurations": configurations, "runs": runs}


def bench_rows(bench: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per zoo organism and procedure of a bench document."""
    exp = {"experiment": bench["config_hash"]}
    cfg = config_columns(bench["config"])
    out = []
    for o in bench["organisms"]:
        who = {"organism": o["name"]} | {k: o[k] for k in ("class", "group", "drive")}
        who |= {"base_seed": o["base_seed"], "label": o["label"]}
        for procedure, p in o["procedures"].items():
            values = {k: p.get(k) for k in ("p_value", "statistic", "decision", "reference_mean")}
            out.append(exp | who | {"procedure": procedure} | values | cfg)
    return out


def write(store_root: Path, results: dict[str, Any]) -> list[Path]:
    """Append one experiment's (or bench's) rows to the dataset (atomically, one file per
    table)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = []
    for table, table_rows in rows(results).items():
        folder = store_root / FOLDER / table
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{results['config_hash']}.parquet"
        tmp = folder / f".tmp-{final.stem}-{os.getpid()}.parquet"
        pq.write_table(pa.Table.from_pylist(table_rows), tmp, compression="zstd")
        os.replace(tmp, final)
        paths.append(final)
    return paths


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_DOTTED = re.compile(r"""(?<!["'\w.])(config(?:\.\w+)+)""")


def _where(text: str) -> str:
    """A WHERE clause with `config.a.b` columns quoted (outside string literals)."""
    parts = re.split(r"('(?:[^']|'')*')", text)
    return "".join(
        p if i % 2 else _DOTTED.sub(lambda m: _quote(m[1]), p) for i, p in enumerate(parts)
    )


def query(
    store_root: Path,
    table: str = "configurations",
    where: str | None = None,
    group_by: list[str] | None = None,
    columns: list[str] | None = None,
) -> tuple[list[str], list[tuple]]:
    """(column names, rows) of a table, filtered by the SQL `where`. With `group_by`: per group
    `n` and the mean of each value column (`VALUES`, or `columns`), the first with a 95%
    t-interval over the rows (`_lo`, `_hi`). Without: the rows (`columns`; default all but the
    `config.*` columns)."""
    import duckdb

    if table not in TABLES:
        raise QueryError(f"unknown table {table!r}; choose one of {', '.join(TABLES)}")
    files = sorted((store_root / FOLDER / table).glob("*.parquet"))
    if not files:
        raise QueryError(
            f"no results in {str(store_root / FOLDER / table)!r}: run a demo or a sweep first"
        )
    con = duckdb.connect()
    source = f"read_parquet({[str(f) for f in files]!r}, union_by_name = true)"
    known = [d[0] for d in con.execute(f"SELECT * FROM {source} LIMIT 0").description]
    for name in [*(group_by or []), *(columns or [])]:
        if name not in known:
            import difflib

            near = difflib.get_close_matches(name, known, n=3)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise QueryError(f"table {table!r} has no column {name!r}{hint}")
    clause = f" WHERE {_where(where)}" if where else ""
    if group_by:
        values = columns or [c for c in VALUES[table] if c in known]
        keys = ", ".join(_quote(g) for g in group_by)
        first = _quote(values[0])
        aggs = ["count(*) AS n"]
        for i, c in enumerate(values):
            aggs.append(f"avg({_quote(c)}) AS {_quote('mean_' + c)}")
            if i == 0:
                aggs.append(f"stddev_samp({first}) AS __sd")
        sql = f"SELECT {keys}, {', '.join(aggs)} FROM {source}{clause}"
        sql += f" GROUP BY {keys} ORDER BY {keys}"
    else:
        # Default: every column but the config's (name `config.*` columns to see them).
        shown = columns or [c for c in known if not c.startswith("config.")]
        cols = ", ".join(_quote(c) for c in shown)
        sql = f"SELECT {cols} FROM {source}{clause}"
    try:
        cursor = con.execute(sql)
    except duckdb.Error as e:
        raise QueryError(f"query failed: {str(e).splitlines()[0]}") from None
    names = [d[0] for d in cursor.description]
    out = cursor.fetchall()
    if not group_by:
        return names, out
    return _with_interval(names, out, values[0])


def _with_interval(names: list[str], out: list[tuple], first: str) -> tuple[list[str], list[tuple]]:
    """Replace the group's standard deviation by a 95% t-interval of the first value's mean."""
    from scipy import stats

    i_sd, i_n, i_mean = names.index("__sd"), names.index("n"), names.index(f"mean_{first}")
    rows_out = []
    for row in out:
        n, mean, sd = row[i_n], row[i_mean], row[i_sd]
        if n > 1 and sd is not None and mean is not None:
            half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
            lo, hi = mean - half, mean + half
        else:
            lo = hi = None
        values = list(row)
        values[i_sd : i_sd + 1] = []
        values[i_mean + 1 : i_mean + 1] = [lo, hi]
        rows_out.append(tuple(values))
    names = [n for n in names if n != "__sd"]
    j = names.index(f"mean_{first}") + 1
    names[j:j] = [f"{first}_lo", f"{first}_hi"]
    return names, rows_out


__all__ = ["TABLES", "QueryError", "bench_rows", "config_columns", "query", "rows", "write"]
