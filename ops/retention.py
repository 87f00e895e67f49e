"""Databases and retention: the district databases keep raw readings for 30 days, the city
database keeps one-minute rollups, events and node health for two years (edge/SCHEMA.md).

InfluxDB 1.x: a database per platform whose *default* retention policy carries the
duration, so the edge's writes (`/write?db=...`, no `rp`) land in it. A database that
already holds data in another default policy (`autogen`, made by a bare CREATE DATABASE)
keeps it as its default and gets the duration there: a new default policy would hide that
data from every query that names no policy. When the duration would delete some of that
data, `db init` refuses and says which duration keeps it. InfluxDB 2.x/3.x: a
bucket per platform with an expiry rule, plus a DBRP mapping (database/retention policy ->
bucket) so that InfluxQL on `/query` finds it; both through influxdb-client's v2 API.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ops.client import InfluxQLClient, QueryError, quote_ident

DAY_S = 86_400
# The 16 districts of Shanghai's "1+16+X" plan: the default set of district databases.
SHANGHAI_DISTRICTS = (
    "huangpu",
    "xuhui",
    "changning",
    "jingan",
    "putuo",
    "hongkou",
    "yangpu",
    "minhang",
    "baoshan",
    "jiading",
    "pudong",
    "jinshan",
    "songjiang",
    "qingpu",
    "fengxian",
    "chongming",
)
CITY_DB = "city"
AUTOGEN = "autogen"  # the policy a bare CREATE DATABASE makes, where data lands without one of ours
RAW_POLICY = "raw"
ROLLUP_POLICY = "rollup"


class RetentionError(RuntimeError):
    """Setting up a database or bucket failed; the message is one line."""


@dataclass(frozen=True)
class Store:
    """One database (1.x) or bucket (2.x/3.x) and how long it keeps data."""

    database: str
    policy: str
    duration_s: int
    shard_duration_s: int
    level: str  # "district" or "city"


def shard_duration_s(duration_s: int) -> int:
    """Shard group length InfluxDB recommends for a retention period: 1 day up to six
    months of retention, 7 days beyond (InfluxDB docs, "shard group duration")."""
    return DAY_S if duration_s <= 183 * DAY_S else 7 * DAY_S


def plan(districts: list[str] | tuple[str, ...], raw_days: int = 30, rollup_days: int = 730) -> list[Store]:
    if raw_days < 1 or rollup_days < 1:
        raise RetentionError("retention must be at least one day")
    stores = [
        Store(f"district_{d}", RAW_POLICY, raw_days * DAY_S, shard_duration_s(raw_days * DAY_S), "district")
        for d in dict.fromkeys(districts)
    ]
    stores.append(
        Store(CITY_DB, ROLLUP_POLICY, rollup_days * DAY_S, shard_duration_s(rollup_days * DAY_S), "city")
    )
    return stores


# -- InfluxDB 1.x -----------------------------------------------------------------------------

_GO_DURATION = re.compile(r"(\d+)(h|m|s)")


def go_duration_s(text: str) -> int:
    """`720h0m0s` (how InfluxDB 1.x prints durations) in seconds; `0s` means forever."""
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[unit] for n, unit in _GO_DURATION.findall(text))


def _policy_clause(store: Store) -> str:
    return (
        f"DURATION {store.duration_s // 3600}h REPLICATION 1 SHARD DURATION {store.shard_duration_s // 3600}h"
    )


def _same(policy: dict[str, Any], store: Store) -> bool:
    return (
        go_duration_s(policy["duration"]) == store.duration_s
        and go_duration_s(policy["shardGroupDuration"]) == store.shard_duration_s
        and bool(policy["default"])
    )


def v1_statements(
    store: Store,
    existing: dict[str, dict[str, Any]] | None,
    shard_ends: dict[str, list[int]] | None = None,
    now_s: int | None = None,
) -> tuple[str, str, list[str]]:
    """What to do for one store given its current policies (None: no such database) and the
    end times (epoch s) of the shard groups each policy holds. Returns (action, the policy
    that keeps the store's data, statements); RetentionError when only deleting data or
    hiding it would do."""
    db = quote_ident(store.database)
    if existing is None:
        # Creating the database with its policy makes that policy the default and skips autogen.
        rp = quote_ident(store.policy)
        return "created", store.policy, [f"CREATE DATABASE {db} WITH {_policy_clause(store)} NAME {rp}"]
    default = next((name for name, p in existing.items() if p["default"]), None)
    holding = {name for name, ends in (shard_ends or {}).items() if ends}
    keep = None
    if default is not None and default != store.policy and default in holding:
        keep = default  # the data written so far is in this default policy: it stays the default
    elif default == store.policy and store.policy not in holding and AUTOGEN in holding:
        keep = AUTOGEN  # an earlier run put an empty default in front of the data: undo that
    if keep is not None:
        if store.policy in holding:
            raise RetentionError(
                f"{store.database} holds data in two retention policies, {keep} and {store.policy}: "
                f'copy one into the other first (SELECT * INTO "{store.database}"."{keep}".:MEASUREMENT '
                f'FROM "{store.database}"."{store.policy}"./.*/ GROUP BY *)'
            )
        _check_kept(store, keep, (shard_ends or {})[keep], now_s)
        if _same(existing[keep], store):
            return "unchanged", keep, []
        return (
            f"retention set on {keep}, which holds the data",
            keep,
            [f"ALTER RETENTION POLICY {quote_ident(keep)} ON {db} {_policy_clause(store)} DEFAULT"],
        )
    rp = quote_ident(store.policy)
    current = existing.get(store.policy)
    if current is None:
        return (
            "policy added",
            store.policy,
            [f"CREATE RETENTION POLICY {rp} ON {db} {_policy_clause(store)} DEFAULT"],
        )
    if _same(current, store):
        return "unchanged", store.policy, []
    return "updated", store.policy, [f"ALTER RETENTION POLICY {rp} ON {db} {_policy_clause(store)} DEFAULT"]


def _check_kept(store: Store, policy: str, ends: list[int], now_s: int | None) -> None:
    """Refuse a duration under which InfluxDB would drop shard groups that hold data (it
    drops a group once its end is older than the duration)."""
    now_s = int(time.time()) if now_s is None else now_s
    oldest_end = min(ends)
    if oldest_end >= now_s - store.duration_s:
        return
    days = -(-(now_s - oldest_end) // DAY_S) + 1
    flag = "--raw-days" if store.level == "district" else "--rollup-days"
    since = datetime.fromtimestamp(oldest_end, UTC).strftime("%Y-%m-%d")
    raise RetentionError(
        f"{store.database} holds data in its retention policy {policy} in shards that ended on "
        f"{since}: a duration of {store.duration_s // DAY_S} days would delete them. Give {flag} "
        f"{days} (or more) to keep them, or export them first"
    )


def shard_ends(client: InfluxQLClient) -> dict[tuple[str, str], list[int]]:
    """(database, policy) -> end times (epoch s) of its shard groups: where data is."""
    out: dict[tuple[str, str], list[int]] = {}
    for series in client.one("SHOW SHARDS"):
        for rec in series.records():
            end = rec.get("end_time")
            if not isinstance(end, str):
                continue
            moment = datetime.fromisoformat(end.replace("Z", "+00:00"))
            out.setdefault((rec["database"], rec["retention_policy"]), []).append(int(moment.timestamp()))
    return out


def init_v1(client: InfluxQLClient, stores: list[Store], dry_run: bool = False) -> list[dict[str, Any]]:
    """Create or bring up to date every database and its default retention policy. Running
    it again changes nothing; data already written stays where queries find it."""
    try:
        shown = client.one("SHOW DATABASES")
        databases = {row[0] for s in shown for row in s.values}
        shards = shard_ends(client)
        planned = []
        for store in stores:
            existing = None
            if store.database in databases:
                existing = {
                    r["name"]: r
                    for s in client.one(f"SHOW RETENTION POLICIES ON {quote_ident(store.database)}")
                    for r in s.records()
                }
            ends = {rp: e for (db, rp), e in shards.items() if db == store.database}
            planned.append((store, *v1_statements(store, existing, ends)))
        # Every store is checked before any is changed: a refusal leaves all as they were.
        results = []
        for store, action, policy, statements in planned:
            if statements and not dry_run:
                client.query(";".join(statements))
            results.append(
                _result(
                    store,
                    "would be " + action if dry_run and statements else action,
                    "; ".join(statements),
                    policy,
                )
            )
        return results
    except QueryError as err:
        raise RetentionError(str(err)) from None


def _result(store: Store, action: str, request: str, policy: str | None = None) -> dict[str, Any]:
    return {
        "database": store.database,
        "policy": policy or store.policy,
        "level": store.level,
        "retention_days": store.duration_s // DAY_S,
        "shard_days": store.shard_duration_s // DAY_S,
        "action": action,
        "request": request,
    }


# -- InfluxDB 2.x / 3.x -----------------------------------------------------------------------


def bucket_request(store: Store, org_id: str):
    """The body of `POST /api/v2/buckets` for a store."""
    from influxdb_client import BucketRetentionRules
    from influxdb_client.domain.post_bucket_request import PostBucketRequest

    rules = BucketRetentionRules(
        type="expire", every_seconds=store.duration_s, shard_group_duration_seconds=store.shard_duration_s
    )
    return PostBucketRequest(
        org_id=org_id,
        name=store.database,
        retention_rules=[rules],
        description=f"urbansense {store.level} level ({store.policy})",
    )


def dbrp_request(store: Store, org_id: str, bucket_id: str):
    """The body of `POST /api/v2/dbrps`: InfluxQL `db`/`rp` names mapped onto the bucket."""
    from influxdb_client.domain.dbrp_create import DBRPCreate

    return DBRPCreate(
        org_id=org_id,
        bucket_id=bucket_id,
        database=store.database,
        retention_policy=store.policy,
        default=True,
    )


def init_v2(
    url: str, token: str, org: str, stores: list[Store], dry_run: bool = False
) -> list[dict[str, Any]]:
    """Create or update one bucket per store and its DBRP mapping, via influxdb-client."""
    import json

    from influxdb_client import InfluxDBClient
    from influxdb_client.client.util.helpers import get_org_query_param
    from influxdb_client.service.dbr_ps_service import DBRPsService

    results = []
    # No retries: a setup command should say at once that the server is not there.
    with InfluxDBClient(url=url, token=token, org=org, timeout=15_000, retries=False) as client:

        def body(obj: Any) -> str:
            return json.dumps(client.api_client.sanitize_for_serialization(obj), sort_keys=True)

        try:
            if dry_run:
                for store in stores:
                    requests = (
                        f"POST /api/v2/buckets {body(bucket_request(store, '<org id>'))}; POST /api/v2/dbrps "
                        f"{body(dbrp_request(store, '<org id>', '<bucket id>'))}"
                    )
                    results.append(_result(store, "would be created", requests))
                return results
            org_id = get_org_query_param(org=org, client=client, required_id=True)
            buckets = client.buckets_api()
            dbrps = DBRPsService(client.api_client)
            for store in stores:
                request = bucket_request(store, org_id)
                bucket = buckets.find_bucket_by_name(store.database)
                if bucket is None:
                    bucket, action = buckets.create_bucket(bucket=request), "created"
                elif [(r.every_seconds, r.shard_group_duration_seconds) for r in bucket.retention_rules] != [
                    (store.duration_s, store.shard_duration_s)
                ]:
                    bucket.retention_rules = request.retention_rules
                    bucket, action = buckets.update_bucket(bucket), "updated"
                else:
                    action = "unchanged"
                mapped = dbrps.get_dbr_ps(org_id=org_id, db=store.database, rp=store.policy).content
                if not mapped:
                    dbrps.post_dbrp(dbrp_create=dbrp_request(store, org_id, bucket.id))
                    action += ", mapped for InfluxQL"
                results.append(_result(store, action, body(request)))
        except Exception as err:  # influxdb-client raises ApiException and urllib3 errors
            raise RetentionError(f"{url}: {_v2_error(err)}") from None
    return results


def _v2_error(err: Exception) -> str:
    status = getattr(err, "status", None)
    if status is not None:
        reason = (getattr(err, "message", None) or getattr(err, "reason", None) or "").strip()
        hint = " (no InfluxDB 2.x bucket API here)" if status in (400, 404, 405) else ""
        return f"HTTP {status} {reason}{hint}".strip()
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    if "Connection refused" in text or "NewConnectionError" in text:
        return "cannot connect (connection refused)"
    return text
