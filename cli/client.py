"""A small client of Bayport's HTTP API, used by the CLI, the demo and the end-to-end tests."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

# Answers after which a submission is sent again (with the same Idempotency-Key).
_RESEND = frozenset({429, 502, 503, 504})


def _resend_wait(response: httpx.Response | None, attempt: int) -> float:
    retry_after = response.headers.get("Retry-After") if response is not None else None
    if retry_after and retry_after.isdigit():
        return min(float(retry_after), 30.0)
    return min(0.5 * 2 ** (attempt - 1), 8.0)


FINAL_STATES = {"succeeded", "partially_failed", "failed", "cancelled", "needs_review"}


class ApiError(Exception):
    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        try:
            self.body: Any = response.json()
        except ValueError:
            self.body = response.text
        super().__init__(f"HTTP {response.status_code}: {self.body}")


class BayportClient:
    def __init__(self, url: str, access_key: str, *, timeout: float = 30.0) -> None:
        self.http = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {access_key}"},
            timeout=timeout,
        )

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise ApiError(response)
        return response.json() if response.content else None

    def create_storage_config(self, **fields: Any) -> Any:
        return self.request("POST", "/v1/storage-configs", json=fields)

    def create_dataset(self, name: str, config_name: str | None = None, **extra: Any) -> Any:
        return self.request(
            "POST", "/v1/datasets", json={"name": name, "config_name": config_name, **extra}
        )

    def submit(
        self, manifest: dict[str, Any], *, idempotency_key: str | None = None, attempts: int = 5
    ) -> Any:
        """Submit a manifest. Sent with an Idempotency-Key (a new one unless given), so it
        is safe to send again: a connection lost, an API restarting or busy (502/503/504,
        429) is retried with the same key, and however often it arrives, one job is made."""
        key = idempotency_key or uuid.uuid4().hex
        for attempt in range(1, attempts + 1):
            response: httpx.Response | None = None
            try:
                response = self.http.post(
                    "/v1/imports", json=manifest, headers={"Idempotency-Key": key}
                )
            except httpx.TransportError:
                if attempt == attempts:
                    raise
            if response is not None and (
                response.status_code not in _RESEND or attempt == attempts
            ):
                if response.status_code >= 400:
                    raise ApiError(response)
                return response.json()
            time.sleep(_resend_wait(response, attempt))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def job(self, job_id: str) -> Any:
        return self.request("GET", f"/v1/imports/{job_id}")

    def retry(self, job_id: str) -> Any:
        return self.request("POST", f"/v1/imports/{job_id}/retry")

    def cancel(self, job_id: str) -> Any:
        return self.request("POST", f"/v1/imports/{job_id}/cancel")

    def failures(self, job_id: str) -> list[Any]:
        return list(self._pages(f"/v1/imports/{job_id}/failures"))

    def segment_data(self, dataset: str, segment: str) -> list[Any]:
        return list(self._pages(f"/v1/datasets/{dataset}/segments/{segment}/data"))

    def create_schedule(
        self,
        name: str,
        manifest: dict[str, Any],
        cron: str,
        *,
        timezone: str = "UTC",
        enabled: bool = True,
    ) -> Any:
        body = {
            "name": name,
            "manifest": manifest,
            "cron": cron,
            "timezone": timezone,
            "enabled": enabled,
        }
        return self.request("POST", "/v1/schedules", json=body)

    def schedules(self) -> Any:
        """Every schedule: the list is paged, the X-Next-Offset header saying where it goes on."""
        found: list[Any] = []
        offset: str | None = "0"
        while offset is not None:
            response = self.http.get("/v1/schedules", params={"offset": offset, "limit": 1000})
            if response.status_code >= 400:
                raise ApiError(response)
            found.extend(response.json())
            offset = response.headers.get("X-Next-Offset")
        return found

    def schedule(self, name: str) -> Any:
        return self.request("GET", f"/v1/schedules/{name}")

    def update_schedule(self, name: str, **changes: Any) -> Any:
        return self.request("PATCH", f"/v1/schedules/{name}", json=changes)

    def delete_schedule(self, name: str) -> None:
        self.request("DELETE", f"/v1/schedules/{name}")

    def run_schedule(self, name: str) -> Any:
        return self.request("POST", f"/v1/schedules/{name}/run")

    def schedule_runs(self, name: str, *, limit: int | None = None) -> list[Any]:
        """The schedule's runs, newest first (all of them, or the latest `limit`)."""
        path = f"/v1/schedules/{name}/runs"
        if limit is not None:
            return list(self.request("GET", path, params={"limit": limit})["items"])
        return list(self._pages(path))

    def _pages(self, path: str) -> Any:
        offset: int | None = 0
        while offset is not None:
            page = self.request("GET", path, params={"offset": offset, "limit": 1000})
            yield from page["items"]
            offset = page["next_offset"]

    def wait(self, job_id: str, *, timeout: float = 300.0, interval: float = 0.3) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["state"] in FINAL_STATES:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['state']} after {timeout:.0f}s: {job}")
            time.sleep(interval)
