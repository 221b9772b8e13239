"""The command line's frame: the root app, output (rich tables or ``--json``), errors, the store.

Every command prints a table (or JSON with ``--json``) and exits 0, or prints one line
``error: <code>: <message>`` on stderr and exits 1 (2 for a usage error).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, TypeVar
from uuid import UUID

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from domain.errors import InvalidInput, QuotaflowError, TransientError
from domain.models import Role, User, invalid_input
from settings import get_settings
from store import Store
from store.authz import Authorizer

T = TypeVar("T")

app = typer.Typer(
    name="starter.py",
    help="quotaflow: multi-tenant GPU/CPU job scheduling on shared Kubernetes clusters.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# Scripts read our tables from pipes too: do not squeeze them into 80 columns there.
console = Console(width=None if sys.stdout.isatty() else 200)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


class Session:
    """What one invocation shares: the store (opened on first use) and who is acting."""

    def __init__(self) -> None:
        self._store: Store | None = None
        self._owned = False
        self.actor_name: str | None = None
        self.json = False

    def use(self, store: Store) -> None:
        """Work on a store someone else owns (tests, the dev stack): it is not closed here."""
        self._store, self._owned = store, False

    @property
    def store(self) -> Store:
        if self._store is None:
            settings = get_settings()
            self._store, self._owned = Store.from_settings(settings), True
            if settings.embedded_database:
                # The embedded default migrates itself; a real database is migrated on purpose
                # with `db migrate`.
                from store.migrate import migrate

                with self._store.db.connection() as conn:
                    migrate(conn)
        return self._store

    def actor(self) -> User:
        if not self.actor_name:
            raise InvalidInput("say who is acting: --as USERNAME or QF_ACTOR", field="as")
        return self.authz.user(self.actor_name)

    @property
    def authz(self) -> Authorizer:
        return Authorizer(self.store.db)

    def require(self, project_id: UUID, role: Role, action: str) -> User:
        """The actor, if they hold ``role`` on the project (inherited from any ancestor)."""
        return self.authz.require(self.actor().username, project_id, role, action)

    def require_platform_admin(self, action: str) -> User:
        return self.authz.require_platform_admin(self.actor().username, action)

    def temporal(self, work: Callable[[Client], Awaitable[T]]) -> T:
        """Run ``work`` with a Temporal client (one event loop per command)."""
        settings = get_settings()
        address = settings.temporal_address
        if address is None:
            from devstack.temporal import TemporalDevServer

            server = TemporalDevServer(settings.state_dir, port=settings.temporal_port)
            if not server.is_running():
                raise TransientError(
                    "Temporal is not running: start the stack with `python starter.py up` "
                    "or set QF_TEMPORAL_ADDRESS"
                )
            address = server.address

        async def run() -> T:
            client = await Client.connect(
                address,
                namespace=settings.temporal_namespace,
                data_converter=pydantic_data_converter,
            )
            return await work(client)

        return asyncio.run(run())

    def close(self) -> None:
        if self._store is not None and self._owned:
            self._store.close()
            self._store = None


session = Session()


@app.callback()
def _root(
    as_: Annotated[
        str | None, typer.Option("--as", envvar="QF_ACTOR", help="The user acting.")
    ] = None,
    json_: JsonOpt = False,
) -> None:
    session.actor_name = as_
    session.json = json_


def jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, UUID | datetime):
        return str(value) if isinstance(value, UUID) else value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(jsonable(value), sort_keys=True)
    return str(value)


def emit(
    data: Any,
    columns: Sequence[str] | None = None,
    *,
    title: str | None = None,
    json_: bool = False,
) -> None:
    """Print ``data`` (a model, a dict, or a list of them) as a table or as JSON."""
    if json_ or session.json:
        sys.stdout.write(json.dumps(jsonable(data), indent=2, sort_keys=False) + "\n")
        return
    rows = data if isinstance(data, list) else [data]
    rows = [jsonable(r) if not isinstance(r, dict) else r for r in rows]
    if not rows:
        console.print(f"(no {title or 'rows'})")
        return
    columns = list(columns or rows[0].keys())
    table = Table(title=title, show_lines=False, header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*[_cell(row.get(c)) for c in columns])
    console.print(table)


def say(message: str, *, json_: bool = False, **data: Any) -> None:
    """A one-line confirmation (or its data as JSON)."""
    if json_ or session.json:
        sys.stdout.write(json.dumps(jsonable(data), indent=2) + "\n")
    else:
        console.print(message)


@contextmanager
def validated() -> Iterator[None]:
    """Turn a pydantic error raised while building a request into InvalidInput."""
    try:
        yield
    except ValidationError as exc:
        raise invalid_input(exc) from None


def run(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code instead of raising."""
    try:
        app(args=argv, prog_name="starter.py")
        return 0
    except QuotaflowError as exc:
        message = " ".join(str(exc).split())  # one line, whatever the message holds
        sys.stderr.write(f"error: {exc.code}: {message}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("aborted\n")
        return 130
    except SystemExit as exc:  # typer ends every run (help, usage errors) with sys.exit
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        session.close()
