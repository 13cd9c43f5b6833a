"""MustCheck SDK: must-check credit lookups for approval systems, inline and fail-closed.

>>> from mustcheck import Client                       # doctest: +SKIP
>>> with Client("127.0.0.1:50051", token=open("demo.token").read().strip()) as client:
...     result = client.check("91110108551385082Q", "MOHURD-0001", purpose="施工许可审批")
...     if result.restricted:
...         for measure in result.mandatory_measures:
...             print(measure.text, measure.legal_basis)
"""

from ._channel import TLSConfig
from ._client import DEFAULT_TIMEOUT, AsyncClient, Client
from ._errors import (
    AuthenticationFailed,
    CheckUnavailable,
    DeadlineExceeded,
    GatewayFault,
    GatewayUnreachable,
    InvalidRequest,
    InvalidSubject,
    MustCheckError,
    PermissionDenied,
    RateLimited,
    UnknownMatter,
)
from ._models import (
    BatchItem,
    BatchResult,
    CheckResult,
    EntryStatus,
    LegalBasis,
    Link,
    ListKind,
    Measure,
    MeasureKind,
    Membership,
    Outcome,
    OutcomeAck,
)
from ._retry import RetryPolicy
from .identifiers import SubjectKind
from .receipts import InvalidReceipt, Receipt, verify_receipt
from .suites import SuiteUnavailable

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_TIMEOUT",
    "AsyncClient",
    "AuthenticationFailed",
    "BatchItem",
    "BatchResult",
    "CheckResult",
    "CheckUnavailable",
    "Client",
    "DeadlineExceeded",
    "EntryStatus",
    "GatewayFault",
    "GatewayUnreachable",
    "InvalidReceipt",
    "InvalidRequest",
    "InvalidSubject",
    "LegalBasis",
    "Link",
    "ListKind",
    "Measure",
    "MeasureKind",
    "Membership",
    "MustCheckError",
    "Outcome",
    "OutcomeAck",
    "PermissionDenied",
    "RateLimited",
    "Receipt",
    "RetryPolicy",
    "SubjectKind",
    "SuiteUnavailable",
    "TLSConfig",
    "UnknownMatter",
    "__version__",
    "verify_receipt",
]
