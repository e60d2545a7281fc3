"""What a read-only query may be: one read, judged on ClickHouse's own parse of it (EXPLAIN AST).

readonly=1 alone is not enough: `INTO OUTFILE` is written by the client (chdb runs in our process, so
it wrote files, even into the store's metadata), the scalar `file()` reads any file the process can,
and table functions reach the filesystem and the network. `refusal()` walks the tree ClickHouse printed
for the statement, so quotes, comments and case cannot hide a keyword, and a string literal is a literal.
"""

from __future__ import annotations

from collections.abc import Sequence

# Statements that only read (the root node of EXPLAIN AST); anything else (INSERT, KILL, SET, USE,
# OPTIMIZE, SYSTEM, EXPLAIN, ...) is refused.
READ_STATEMENTS = frozenset({"SelectWithUnionQuery", "ShowTables", "ShowColumns", "DescribeQuery",
                             "ShowCreateTableQuery", "ShowCreateViewQuery", "ShowCreateDatabaseQuery",
                             "ShowCreateDictionaryQuery", "ExistsTableQuery", "ExistsDatabaseQuery",
                             "ExistsViewQuery", "ExistsDictionaryQuery", "ShowProcesslistQuery"})
# Table functions that read only the store or generate rows; every other one (file, url, remote, s3,
# mysql, executable, input, cluster, iceberg, ... and any added later) is refused in FROM.
STORE_TABLE_FUNCTIONS = frozenset(name.lower() for name in (
    "numbers", "numbers_mt", "zeros", "zeros_mt", "generateRandom", "generateSeries", "generate_series",
    "primes", "values", "null", "merge", "view", "viewExplain", "viewIfPermitted", "loop", "format",
    "dictionary", "mergeTreeIndex", "mergeTreeProjection",
))
# Functions that reach outside the store wherever they appear (ClickHouse 26.9's system.table_functions
# that touch files or the network, and the scalar functions that read files or certificates).
OUTSIDE_FUNCTIONS = frozenset(name.lower() for name in (
    "file", "fileCluster", "filesystem", "url", "urlCluster", "remote", "remoteSecure", "cluster",
    "clusterAllReplicas", "s3", "s3Cluster", "gcs", "oss", "cosn", "hdfs", "hdfsCluster", "azureBlobStorage",
    "azureBlobStorageCluster", "mysql", "postgresql", "sqlite", "mongodb", "redis", "odbc", "jdbc",
    "executable", "input", "python", "eval", "arrowstream", "bigquery", "ytsaurus", "prometheusQuery",
    "prometheusQueryRange", "deltaLake", "deltaLakeAzure", "deltaLakeAzureCluster", "deltaLakeCluster",
    "deltaLakeLocal", "deltaLakeS3", "deltaLakeS3Cluster", "hudi", "hudiCluster", "iceberg", "icebergAzure",
    "icebergAzureCluster", "icebergCluster", "icebergHDFS", "icebergHDFSCluster", "icebergLocal",
    "icebergLocalCluster", "icebergS3", "icebergS3Cluster", "paimon", "paimonAzure", "paimonAzureCluster",
    "paimonCluster", "paimonHDFS", "paimonHDFSCluster", "paimonLocal", "paimonS3", "paimonS3Cluster",
    "catboostEvaluate", "naiveBayesClassifier", "naiveBayesClassifierWithProb",
    "naiveBayesClassifierWithAllProbs", "showCertificate",
))


def _nodes(ast: Sequence[str]) -> list[tuple[int, str, str]]:
    """(depth, kind, first word after the kind) for each line of EXPLAIN AST (one space per level)."""
    nodes = []
    for line in ast:
        text = line.lstrip(" ")
        words = text.split(" ", 2)
        nodes.append((len(line) - len(text), words[0], words[1] if len(words) > 1 else ""))
    return nodes


def refusal(ast: Sequence[str]) -> str | None:
    """Why the statement whose EXPLAIN AST lines these are is not a single read; None when it is one."""
    nodes = _nodes(ast)
    if not nodes:
        return "an empty statement"
    root = nodes[0][1]
    if root not in READ_STATEMENTS:
        return f"{root.removesuffix('Query')} is not a read; only SELECT, SHOW, DESCRIBE and EXISTS are"
    parents: list[str] = []
    for depth, kind, name in nodes:
        del parents[depth:]
        parent = parents[-1] if parents else ""
        parents.append(kind)
        if depth == 1 and kind == "Literal":
            return "INTO OUTFILE writes a file"
        if kind == "Set":
            return "a query may not change settings (SETTINGS)"
        if kind != "Function":
            continue
        if parent == "TableExpression" and name.lower() not in STORE_TABLE_FUNCTIONS:
            return f"the table function {name}() reads outside the store"
        if name.lower() in OUTSIDE_FUNCTIONS:
            return f"the function {name}() reads outside the store"
    return None
