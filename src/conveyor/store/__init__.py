"""Everything that talks SQL: the schema, its migrations and the named statements.

`Store` is the one object the rest of Conveyor calls: a typed method per named statement,
grouped by caller in the modules beside this one, rows read by column name, driver errors
turned into Conveyor's own (see `store.base`).
"""

from conveyor.store.admin_reads import AdminReads
from conveyor.store.admin_writes import AdminWrites
from conveyor.store.alerts import AlertStatements
from conveyor.store.base import StoreBase, database_errors
from conveyor.store.dispatch import DispatchStatements
from conveyor.store.fairness import FairnessStatements
from conveyor.store.gauges import GaugeStatements
from conveyor.store.limits import LimitStatements
from conveyor.store.metrics_history import MetricsHistoryStatements
from conveyor.store.producer import ProducerStatements
from conveyor.store.queries import Queries, load_queries
from conveyor.store.scaling import ScalingStatements
from conveyor.store.schedules import ScheduleStatements
from conveyor.store.tools import ToolStatements
from conveyor.store.upkeep import UpkeepStatements
from conveyor.store.web_sessions import WebSessionStatements
from conveyor.store.work import WorkStatements


class Store(
    ProducerStatements,
    DispatchStatements,
    FairnessStatements,
    WorkStatements,
    UpkeepStatements,
    AdminReads,
    AdminWrites,
    ToolStatements,
    WebSessionStatements,
    AlertStatements,
    GaugeStatements,
    MetricsHistoryStatements,
    ScalingStatements,
    ScheduleStatements,
    LimitStatements,
):
    """Every statement Conveyor runs, on one pool (or one bound transaction)."""


__all__ = ["Queries", "Store", "StoreBase", "database_errors", "load_queries"]
