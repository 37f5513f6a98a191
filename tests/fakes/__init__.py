"""Local stand-ins for the clouds, for offline tests: small HTTP servers on 127.0.0.1 that answer
exactly the REST calls our providers' SDKs make (Azure Resource Manager, GCP Compute, the three
metadata services), strict about request shape and api-version, and able to inject throttling,
5xx, timeouts and slow long-running operations. AWS is moto's server (a separate process)."""
