"""This project's Predictor served by LitServe, one of the peers in bench.py's Peers section.

    .venv-peers/bin/python bench/peer_litserve.py --port 8001 --workers 2
    .venv-peers/bin/python bench/peer_litserve.py --port 8001 --max-batch-size 32 --batch-timeout 0.005

POST /predict takes a raw image body and answers the same fields as this service's /predict.
"""

import argparse
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import litserve as ls
from fastapi import Body, HTTPException

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the project's own modules, one folder up

from common import peer_answers
from digits.feedback.ids import PredictionIds, load_secret
from digits.imaging.errors import ImageError
from digits.inference.forward import limit_threads
from digits.inference.predictor import Predictor


class DigitAPI(ls.LitAPI):
    def setup(self, device: str) -> None:
        limit_threads(1)  # as in this service: one image is too little work to share between threads
        self.predictor = Predictor()
        self.ids = PredictionIds(load_secret(os.environ.get("PREDICTION_SECRET", "")), 3600)

    # LitServe declares its endpoint's argument with this annotation, so FastAPI hands over the raw body.
    def decode_request(self, request: Annotated[bytes, Body()]) -> bytes:
        return request

    # Without batching LitServe passes one upload, with batching a list of them.
    def predict(self, x: bytes | list[bytes]) -> Any:
        answers = peer_answers(self.predictor, self.ids, x if isinstance(x, list) else [x])
        return answers if isinstance(x, list) else answers[0]

    def encode_response(self, output: dict[str, Any] | ImageError) -> dict[str, Any]:
        if isinstance(output, ImageError):
            raise HTTPException(400, detail=str(output))
        return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8001, help="port on 127.0.0.1 (default: 8001)")
    parser.add_argument("--workers", type=int, default=1, help="inference worker processes (default: 1)")
    parser.add_argument("--api-servers", type=int, default=1, help="HTTP server processes (default: 1)")
    parser.add_argument("--max-batch-size", type=int, default=1, help="requests per forward pass (default: 1)")
    parser.add_argument("--batch-timeout", type=float, default=0.0, help="seconds to wait for a batch (default: 0)")
    parser.add_argument("--fast-queue", action="store_true", help="ZeroMQ instead of multiprocessing queues")
    args = parser.parse_args()
    api = DigitAPI(max_batch_size=args.max_batch_size, batch_timeout=args.batch_timeout)
    server = ls.LitServer(
        api, accelerator="cpu", devices=1, workers_per_device=args.workers, fast_queue=args.fast_queue
    )
    # log_level warning: no access log, as this service's is off in the benchmark too
    server.run(
        host="127.0.0.1",
        port=args.port,
        num_api_servers=args.api_servers,
        log_level="warning",
        generate_client_file=False,
    )


if __name__ == "__main__":
    main()
