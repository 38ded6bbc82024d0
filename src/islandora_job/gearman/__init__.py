"""The Gearman protocol: a sans-I/O codec with thin blocking I/O on top.

This package knows nothing of jobs, payloads or pytest; it moves bytes.
"""

from .admin import AdminError, FunctionStatus, GearmanAdmin, JobInfo, WorkerInfo
from .client import (
    GearmanClient,
    GearmanTimeout,
    JobResult,
    JobStatus,
    Priority,
    ServerError,
)
from .connection import Connection, ServerUnavailable, parse_address
from .protocol import Magic, Packet, PacketDecoder, PacketType, ProtocolError
from .worker import GearmanWorker, WorkerJob, WorkFailure

__all__ = [
    "AdminError",
    "Connection",
    "FunctionStatus",
    "GearmanAdmin",
    "GearmanClient",
    "GearmanTimeout",
    "GearmanWorker",
    "JobInfo",
    "JobResult",
    "JobStatus",
    "Magic",
    "Packet",
    "PacketDecoder",
    "PacketType",
    "Priority",
    "ProtocolError",
    "ServerError",
    "ServerUnavailable",
    "WorkFailure",
    "WorkerInfo",
    "WorkerJob",
    "parse_address",
]
