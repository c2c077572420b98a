"""`storeflow esl ...` (spec 002): serve, worker, status, retry, resync, mappings, dead letters."""

from __future__ import annotations

import asyncio
import json
import signal
from functools import partial
from typing import Annotated, Any

import typer
from rich.table import Table

from storeflow.context import get_context
from storeflow.errors import EXIT_FAILED, ConfigError
from storeflow.logs import redacting_console

app = typer.Typer(help="Shopify -> Hipoink shelf-label sync (spec 002).", no_args_is_help=True)
mappings_app = typer.Typer(help="Store mappings: Shopify shop -> Hipoink store.", no_args_is_help=True)
app.add_typer(mappings_app, name="mappings")
console = redacting_console()

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, default=str, indent=2))


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address to bind (default [esl] bind_host, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind (default [esl] port, 8000).")] = None,
) -> None:
    """Serve the webhook receiver and /api (the same app as `storeflow serve`; OpenAPI at /docs).

    Binding anything but 127.0.0.1 requires STOREFLOW_ADMIN_TOKEN.
    """
    from storeflow.web.server import serve_app

    settings = get_context(ctx).settings
    serve_app(get_context(ctx), host or settings.config.esl.bind_host, port or settings.config.esl.port)


@app.command()
def worker(
    ctx: typer.Context,
    drain: Annotated[
        bool, typer.Option("--drain", help="Exit once nothing is pending or in progress (cron, tests).")
    ] = False,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Products per create_multiple.")] = None,
    concurrency: Annotated[int | None, typer.Option(min=1, max=32, help="Claim/send lanes in this process.")] = None,
    mode: Annotated[str, typer.Option(help="batch (create_multiple) or single (one product/create each).")] = "batch",
    rate: Annotated[float | None, typer.Option(help="Requests per second (HIPOINK_RATE_LIMIT_PER_SECOND).")] = None,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
) -> None:
    """Send queued products to Hipoink until SIGINT/SIGTERM (finishing the batch in hand)."""
    from storeflow.esl.worker import WorkerConfig, run_worker

    if mode not in {"batch", "single"}:
        raise typer.BadParameter("must be batch or single", param_hint="--mode")
    app_ctx = get_context(ctx)
    settings = app_ctx.settings
    settings.require("HIPOINK_API_BASE_URL")
    settings.check_production_secrets()
    db = app_ctx.database()
    config = WorkerConfig.from_settings(
        settings, batch_size=batch_size, concurrency=concurrency, mode=mode, rate_per_second=rate
    )

    async def main() -> dict[str, Any]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        assert settings.HIPOINK_API_BASE_URL is not None
        stats = await run_worker(
            db.url,
            config,
            settings.HIPOINK_API_BASE_URL,
            settings.HIPOINK_CLIENT_ID,
            settings.HIPOINK_API_SECRET.get_secret_value(),
            drain=drain,
            stop_after=duration,
            stop=stop,
        )
        return stats.as_dict()

    summary = asyncio.run(main())
    typer.echo(json.dumps({"worker": config.worker_id, **summary}))
    if summary.get("items_failed") or summary.get("items_dead"):
        raise typer.Exit(EXIT_FAILED)


@app.command()
def status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Queue counts by state, oldest pending age, dead letters, last errors, webhook outcomes."""
    from storeflow.esl.store import queue_stats

    db = get_context(ctx).database()
    with db.connect() as conn:
        stats = queue_stats(conn)
    if as_json:
        _echo_json(stats)
        return
    table = Table("state", "items", title="sync_queue")
    for state, n in stats["counts"].items():
        table.add_row(state, str(n))
    console.print(table)
    age = stats["oldest_pending_age_seconds"]
    console.print(f"oldest pending: {'-' if age is None else f'{age:.1f}s'}   due now: {stats['due_pending']}")
    lat = stats["latency_ms_last_hour"]
    if lat["count"]:
        console.print(f"webhook -> label latency (last hour): p50 {lat['p50']:.0f} ms, p99 {lat['p99']:.0f} ms")
    if stats["by_store"]:
        per_store = Table("store", *stats["counts"].keys(), title="per Hipoink store")
        for store, counts in sorted(stats["by_store"].items()):
            per_store.add_row(store, *(str(counts[s]) for s in stats["counts"]))
        console.print(per_store)
    if stats["inbox_last_24h"]:
        console.print(
            "webhooks (24h): " + ", ".join(f"{k} {v}" for k, v in stats["inbox_last_24h"].items()), highlight=False
        )
    if stats["last_errors"]:
        errors = Table("when", "item", "store", "pc", "attempt", "status", "error", title="last errors")
        for e in stats["last_errors"]:
            errors.add_row(
                f"{e['created_at']:%Y-%m-%d %H:%M:%S}",
                str(e["queue_item_id"] or "-"),
                e["store_code"],
                e["product_code"] or "-",
                str(e["attempt"]),
                e["status"],
                (e["error"] or "")[:120],
            )
        console.print(errors)


@app.command()
def retry(
    ctx: typer.Context,
    item: Annotated[list[int] | None, typer.Option("--id", help="Only this queue item (repeatable).")] = None,
    store: Annotated[str | None, typer.Option(help="Only this Hipoink store code.")] = None,
) -> None:
    """Re-enqueue dead letters (failed and dead items) with a fresh set of attempts."""
    from storeflow.esl.store import retry_dead_letters

    db = get_context(ctx).database()
    with db.connect() as conn:
        count = retry_dead_letters(conn, item_ids=item or None, store_code=store)
        conn.commit()
    console.print(f"re-enqueued {count} item(s)")


@app.command()
def dead(
    ctx: typer.Context,
    store: Annotated[str | None, typer.Option(help="Only this Hipoink store code.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List dead letters with their last error."""
    from storeflow.esl.store import dead_letters

    db = get_context(ctx).database()
    with db.connect() as conn:
        rows = dead_letters(conn, store, limit)
    if as_json:
        _echo_json(rows)
        return
    table = Table("item", "store", "state", "attempts", "op", "pc", "last error")
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["store_code"],
            r["state"],
            str(r["attempts"]),
            r["operation"],
            r["pc"] or "-",
            (r["last_error"] or "")[:100],
        )
    console.print(table)


@app.command()
def resync(
    ctx: typer.Context,
    store: Annotated[str, typer.Option(help="Hipoink store code whose products are all sent again.")],
) -> None:
    """Re-send every known product of a store (the periodic reconciliation Shopify recommends)."""
    from storeflow.esl.store import enqueue_resync, store_code_known

    db = get_context(ctx).database()
    with db.connect() as conn:
        if not store_code_known(conn, store):
            raise ConfigError(f"no store mapping has Hipoink store code {store!r} (see `storeflow esl mappings list`)")
        counts = enqueue_resync(conn, store)
        conn.commit()
    console.print(
        f"store {store}: {counts['upserts']} product(s) enqueued, {counts['deletes']} removal(s); "
        f"{counts['invalid_not_sent']} invalid variant(s) not sent"
    )


# ---------------------------------------------------------------- mappings


def _mapping_row(row: dict[str, Any]) -> list[str]:
    return [
        str(row["id"]),
        row["source_store_id"],
        row["hipoink_store_code"],
        "yes" if row["is_active"] else "no",
        ",".join(row["pc_fallback"]),
        row["stock_field"] or "-",
    ]


def _print_mappings(rows: list[dict[str, Any]]) -> None:
    table = Table("id", "shop", "hipoink store", "active", "pc from", "stock field")
    for row in rows:
        table.add_row(*_mapping_row(row))
    console.print(table)


@mappings_app.command("list")
def mappings_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List store mappings."""

    from storeflow.esl.store import list_mappings

    with get_context(ctx).database().connect() as conn:
        rows = list_mappings(conn)
    if as_json:
        _echo_json(rows)
    else:
        _print_mappings(rows)


@mappings_app.command("add")
def mappings_add(
    ctx: typer.Context,
    shop: Annotated[str, typer.Option(help="Shopify shop domain (X-Shopify-Shop-Domain).")],
    store: Annotated[str, typer.Option(help="Hipoink store code.")],
    pc_fallback: Annotated[str, typer.Option(help="Where pc comes from, in order.")] = "barcode,sku,variant_id",
    stock_field: Annotated[str | None, typer.Option(help="Hipoink field for stock (e.g. f1).")] = None,
    inactive: Annotated[bool, typer.Option("--inactive", help="Create it deactivated.")] = False,
) -> None:
    """Map a Shopify shop to a Hipoink store."""
    from pydantic import ValidationError

    from storeflow.esl.models import StoreMappingIn
    from storeflow.esl.store import create_mapping

    try:
        body = StoreMappingIn(
            source_store_id=shop,
            hipoink_store_code=store,
            pc_fallback=pc_fallback.split(","),
            stock_field=stock_field,
            is_active=not inactive,
        )
    except ValidationError as exc:
        raise ConfigError(f"invalid mapping: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}") from exc
    with get_context(ctx).database().connect() as conn:
        row = create_mapping(conn, body)
        conn.commit()
    if row is None:
        raise ConfigError(f"shop {body.source_store_id} already has a mapping (use `storeflow esl mappings update`)")
    _print_mappings([row])


@mappings_app.command("update")
def mappings_update(
    ctx: typer.Context,
    mapping: Annotated[str, typer.Argument(help="Mapping id, shop domain or Hipoink store code.")],
    store: Annotated[str | None, typer.Option(help="New Hipoink store code.")] = None,
    pc_fallback: Annotated[str | None, typer.Option(help="New pc order, e.g. sku,barcode.")] = None,
    stock_field: Annotated[str | None, typer.Option(help="Hipoink stock field ('' = none).")] = None,
    active: Annotated[bool | None, typer.Option("--active/--inactive", help="Activate or deactivate.")] = None,
) -> None:
    """Change a store mapping."""
    from pydantic import ValidationError

    from storeflow.esl.models import StoreMappingUpdate
    from storeflow.esl.store import find_mapping, update_mapping

    values: dict[str, Any] = {}
    if store is not None:
        values["hipoink_store_code"] = store
    if pc_fallback is not None:
        values["pc_fallback"] = pc_fallback.split(",")
    if stock_field is not None:
        values["stock_field"] = stock_field or None
    if active is not None:
        values["is_active"] = active
    try:
        update = StoreMappingUpdate(**values)
    except ValidationError as exc:
        raise ConfigError(f"invalid change: {exc.errors()[0]['msg']}") from exc
    with get_context(ctx).database().connect() as conn:
        found = find_mapping(conn, mapping)
        if found is None:
            raise ConfigError(f"no store mapping {mapping!r}")
        row = update_mapping(conn, found["id"], update)
        conn.commit()
    assert row is not None
    _print_mappings([row])


@mappings_app.command("deactivate")
def mappings_deactivate(
    ctx: typer.Context,
    mapping: Annotated[str, typer.Argument(help="Mapping id, shop domain or Hipoink store code.")],
) -> None:
    """Deactivate a mapping: the shop's webhooks are then recorded as ignored."""

    from storeflow.esl.models import StoreMappingUpdate
    from storeflow.esl.store import find_mapping, update_mapping

    with get_context(ctx).database().connect() as conn:
        found = find_mapping(conn, mapping)
        if found is None:
            raise ConfigError(f"no store mapping {mapping!r}")
        row = update_mapping(conn, found["id"], StoreMappingUpdate(is_active=False))
        conn.commit()
    assert row is not None
    _print_mappings([row])


# ---------------------------------------------------------------- reconciliation and subscriptions (issue 13)

subscriptions_app = typer.Typer(help="Shopify webhook subscriptions of the mapped shops.", no_args_is_help=True)
app.add_typer(subscriptions_app, name="subscriptions")
ShopOpt = Annotated[str, typer.Option("--shop", help="Shop domain from [[esl.shops]] in the TOML, or all.")]


def _each_shop(ctx: typer.Context, shop: str) -> Any:
    """(settings, shop domain, AdminClient) for every shop ``--shop`` names, with one HTTP client."""
    import httpx

    from storeflow.esl.admin import AdminClient, AdminConfig, shop_names

    settings = get_context(ctx).settings
    names = shop_names(settings, shop)
    with httpx.Client(timeout=settings.REQUEST_TIMEOUT_SECONDS) as http:
        for name in names:
            yield settings, name, AdminClient(http, AdminConfig.from_settings(settings, name))


@app.command()
def reconcile(
    ctx: typer.Context,
    shop: ShopOpt,
    full: Annotated[
        bool, typer.Option("--full", help="List every product (a bulk operation); finds deletions.")
    ] = False,
    since: Annotated[
        str | None, typer.Option(help="Incremental from this ISO time (default: last run's high-water mark).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the differences; change nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Make labels equal Shopify: compare the Admin API's products with ours and apply the differences."""

    from storeflow.esl.admin import AdminError
    from storeflow.esl.reconcile_run import reconcile_shop
    from storeflow.esl.transform import FieldError, parse_timestamp

    try:
        since_at = parse_timestamp(since, "--since") if since else None
    except FieldError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from exc
    if full and since_at:
        raise typer.BadParameter("--since is for incremental runs; --full lists everything", param_hint="--since")
    db = get_context(ctx).database()
    results, failed = [], False
    for _, name, client in _each_shop(ctx, shop):
        with db.connect() as conn:
            try:
                result = reconcile_shop(conn, client, full=full, since=since_at, dry_run=dry_run)
            except (AdminError, ConfigError) as exc:
                console.print(f"[red]shop {name}: reconciliation failed: {exc}[/red]")
                failed = True
                continue
        results.append(result)
        if dry_run and not as_json:
            for line in result.changes:
                typer.echo(line)
    if as_json:
        _echo_json([{**r.as_dict(), **({"changes": r.changes} if dry_run else {})} for r in results])
    else:
        table = Table("shop", "mode", "via", "seen", "created", "updated", "deleted", "unchanged", "newer", "cost")
        for r in results:
            table.add_row(
                r.shop,
                r.mode + (" (dry run)" if dry_run else ""),
                r.method,
                str(r.products_seen),
                str(r.created),
                str(r.updated),
                str(r.deleted),
                str(r.unchanged),
                str(r.skipped_newer),
                str(r.cost_used),
            )
        console.print(table)
    if failed:
        raise typer.Exit(EXIT_FAILED)


@subscriptions_app.command("list")
def subscriptions_list(ctx: typer.Context, shop: ShopOpt, as_json: JsonOpt = False) -> None:
    """Shopify's webhook subscriptions per shop, and whether each expected topic is covered."""
    from storeflow.esl.subscriptions import expected_subscriptions, plan_subscriptions

    out = []
    for _, name, client in _each_shop(ctx, shop):
        actual = client.subscriptions()
        plan = plan_subscriptions(expected_subscriptions(client.config.callback_base_url), actual)
        out.append({"shop": name, "subscriptions": actual, "missing": list(plan.missing)})
    if as_json:
        _echo_json(out)
        return
    table = Table("shop", "topic", "uri", "id")
    for entry in out:
        for sub in entry["subscriptions"]:
            table.add_row(entry["shop"], sub["topic"], sub["uri"] or "-", sub["id"])
        for topic in entry["missing"]:
            table.add_row(entry["shop"], topic, "[red]missing[/red]", "-")
    console.print(table)


@subscriptions_app.command("sync")
def subscriptions_sync(
    ctx: typer.Context,
    shop: ShopOpt,
    prune: Annotated[
        bool, typer.Option("--prune", help="Delete our topics' subscriptions pointing elsewhere.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Ensure the four product/inventory topics point at our callback URLs."""

    from storeflow.esl.subscriptions import record_check, sync_subscriptions

    db = get_context(ctx).database()
    results = []
    for _, _name, client in _each_shop(ctx, shop):
        result = sync_subscriptions(client, prune=prune)
        with db.connect() as conn:
            record_check(conn, result)
        results.append(result)
    _print_subscription_results(results, as_json)


@subscriptions_app.command("check")
def subscriptions_check(ctx: typer.Context, shop: ShopOpt, as_json: JsonOpt = False) -> None:
    """Re-create subscriptions Shopify removed; alert once and reconcile since the last webhook."""

    from storeflow.alerts import send_alert
    from storeflow.esl.subscriptions import check_subscriptions

    db = get_context(ctx).database()
    results = []
    for settings, _name, client in _each_shop(ctx, shop):
        with db.connect() as conn:
            results.append(check_subscriptions(conn, client, partial(send_alert, settings)))
    _print_subscription_results(results, as_json)


def _print_subscription_results(results: list[Any], as_json: bool) -> None:
    if as_json:
        _echo_json([r.as_dict() for r in results])
    else:
        for r in results:
            console.print(
                f"shop {r.shop}: {r.present}/{r.expected} present"
                + (f", missing {', '.join(r.missing)}" if r.missing else "")
                + (f", created {', '.join(r.created)}" if r.created else "")
                + (f", deleted {', '.join(r.deleted)}" if r.deleted else ""),
                highlight=False,
            )
            for error in r.errors:
                console.print(f"[red]  {error}[/red]")
    if any(r.errors for r in results):
        raise typer.Exit(EXIT_FAILED)
