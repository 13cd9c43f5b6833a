"""The baseline for ``run.py``: a bare grpcio aio server that answers ``CheckService/Check`` with bytes.

Run by the harness, not by people. It parses each request (as the gateway does) and answers with
the recorded bytes of the real gateway's response to that subject and matter, so that requests and
responses on the wire have exactly the sizes of real checks; it does nothing else (no
authentication, no store, no audit, no receipts). Prints one JSON line (the port) when ready and
serves until its standard input closes.

    python benchmarks/echo_process.py --responses FILE
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
from pathlib import Path
from typing import Any

import grpc

from mustcheck._generated.v1 import check_pb2 as pb

SERVICE = "mustcheck.v1.CheckService"


def load_responses(path: Path) -> dict[tuple[str, str], bytes]:
    """``[[subject, matter, base64 response], …]`` as written by the harness."""
    return {
        (subject, matter): base64.b64decode(encoded)
        for subject, matter, encoded in json.loads(path.read_text(encoding="utf-8"))
    }


def echo_handler(responses: dict[tuple[str, str], bytes]) -> grpc.GenericRpcHandler[Any, Any]:
    fallback = next(iter(responses.values()), b"")

    async def check(request: pb.CheckRequest, context: Any) -> bytes:
        return responses.get((request.subject, request.matter), fallback)

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Check": grpc.unary_unary_rpc_method_handler(
                check, request_deserializer=pb.CheckRequest.FromString, response_serializer=None
            )
        },
    )


async def start_echo(responses: dict[tuple[str, str], bytes]) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((echo_handler(responses),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


async def serve(responses_file: Path) -> None:
    server, port = await start_echo(load_responses(responses_file))
    print(json.dumps({"port": port}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.stop(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--responses", type=Path, required=True)
    asyncio.run(serve(parser.parse_args().responses))


if __name__ == "__main__":
    main()
