"""The three metadata services, as strict as the real ones about what a client must send:
AWS IMDSv2 (a PUT for a session token with a TTL header, then GETs with the token; 401 without),
Azure IMDS (`Metadata: true` and an api-version), GCP (`Metadata-Flavor: Google`), each with the
token endpoint of the instance's identity."""

from __future__ import annotations

import secrets
import time

from fakes.http import HttpFake, Reply, Request


class AwsImdsFake(HttpFake):
    def __init__(self, values: dict[str, str], host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.values = dict(values)
        """meta-data path -> value, e.g. {"instance-id": "i-1", "placement/region": "us-east-1"}."""
        self.tokens: dict[str, float] = {}

    def handle(self, request: Request) -> Reply:
        if request.method == "PUT" and request.path == "/latest/api/token":
            ttl = request.headers.get("x-aws-ec2-metadata-token-ttl-seconds", "")
            if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                return Reply(400, "missing or invalid x-aws-ec2-metadata-token-ttl-seconds")
            token = secrets.token_urlsafe(16)
            self.tokens[token] = time.monotonic() + int(ttl)
            return Reply(200, token)
        if request.method != "GET" or not request.path.startswith("/latest/meta-data/"):
            return Reply(404, "not found")
        token = request.headers.get("x-aws-ec2-metadata-token", "")
        if self.tokens.get(token, 0) < time.monotonic():
            return Reply(401, "unauthorized")  # IMDSv2 only: no token, no answer
        value = self.values.get(request.path.removeprefix("/latest/meta-data/"))
        return Reply(200, value) if value is not None else Reply(404, "not found")


class AzureImdsFake(HttpFake):
    def __init__(self, instance: dict[str, object]) -> None:
        super().__init__()
        self.instance = instance
        self.token_requests = 0

    def handle(self, request: Request) -> Reply:
        if request.headers.get("metadata") != "true":
            return Reply(400, {"error": "Bad request. Required metadata header not specified"})
        if "api-version" not in request.query:
            return Reply(400, {"error": "Bad request. api-version was not specified"})
        if request.path == "/metadata/instance":
            return Reply(200, self.instance)
        if request.path == "/metadata/identity/oauth2/token":
            if not request.query.get("resource"):
                return Reply(400, {"error": "invalid_request", "error_description": "resource missing"})
            self.token_requests += 1
            now = int(time.time())
            return Reply(
                200,
                {
                    "access_token": f"azure-token-{self.token_requests}",
                    "expires_in": "3600",
                    "expires_on": str(now + 3600),
                    "not_before": str(now),
                    "resource": request.query["resource"][0],
                    "token_type": "Bearer",
                },
            )
        return Reply(404, {"error": "not found"})


class GcpMetadataFake(HttpFake):
    def __init__(self, values: dict[str, str]) -> None:
        super().__init__()
        self.values = dict(values)
        self.token_requests = 0

    def handle(self, request: Request) -> Reply:
        if request.headers.get("metadata-flavor") != "Google":
            return Reply(403, "Missing Metadata-Flavor:Google header.")
        path = request.path.removeprefix("/computeMetadata/v1/")
        if path == "instance/service-accounts/default/token":
            self.token_requests += 1
            return Reply(
                200,
                {
                    "access_token": f"gcp-token-{self.token_requests}",
                    "expires_in": 3599,
                    "token_type": "Bearer",
                },
            )
        value = self.values.get(path)
        return Reply(200, value) if value is not None else Reply(404, "not found")
