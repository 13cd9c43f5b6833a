"""The HTTP/JSON binding: ``Check``, ``BatchCheck``, ``ReportOutcome`` and ``ReceiptKeys`` as
``POST /v1/<Rpc>`` with protobuf's JSON mapping, on a listener of its own (``serve --http``).

Each call runs the gRPC pipeline itself (:mod:`.pipeline`): the same interceptors (field bounds,
refusal audit, malformed-request audit, error mapping) around the same servicer, with the HTTP request
standing in for the gRPC call's context (:mod:`.context`). docs/http.md describes the binding.
"""
