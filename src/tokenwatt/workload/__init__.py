"""Workloads: request and session types, synthetic generators, trace readers, prompt synthesis."""

from tokenwatt.workload.agentic import (
    AgenticSpec,
    SessionPlan,
    TurnPlan,
    agentic_requests,
    agentic_sessions,
)
from tokenwatt.workload.arrivals import ArrivalKind, Arrivals
from tokenwatt.workload.blocks import block_id, split_block_id
from tokenwatt.workload.distributions import LogNormal
from tokenwatt.workload.prompts import (
    APPROXIMATE_RULE,
    PromptSynthesizer,
    Tokenizer,
    WordTokenizer,
)
from tokenwatt.workload.sessions import (
    ChatMessage,
    SessionState,
    SessionTurn,
    agentic_states,
    states_from_requests,
)
from tokenwatt.workload.synthetic import (
    WORKLOAD_NAMES,
    SyntheticSpec,
    generate,
    prefix_blocks,
    synthetic_requests,
    workload_spec,
)
from tokenwatt.workload.tokenizer import HFTokenizer, load_tokenizer
from tokenwatt.workload.traces import (
    TraceColumns,
    TraceFormat,
    TraceOptions,
    TraceReader,
    TraceStats,
    detect_format,
    open_trace,
)
from tokenwatt.workload.types import Request

__all__ = [
    "APPROXIMATE_RULE",
    "WORKLOAD_NAMES",
    "AgenticSpec",
    "ArrivalKind",
    "Arrivals",
    "ChatMessage",
    "HFTokenizer",
    "LogNormal",
    "PromptSynthesizer",
    "Request",
    "SessionPlan",
    "SessionState",
    "SessionTurn",
    "SyntheticSpec",
    "Tokenizer",
    "TraceColumns",
    "TraceFormat",
    "TraceOptions",
    "TraceReader",
    "TraceStats",
    "TurnPlan",
    "WordTokenizer",
    "agentic_requests",
    "agentic_sessions",
    "agentic_states",
    "block_id",
    "detect_format",
    "generate",
    "load_tokenizer",
    "open_trace",
    "prefix_blocks",
    "split_block_id",
    "states_from_requests",
    "synthetic_requests",
    "workload_spec",
]
