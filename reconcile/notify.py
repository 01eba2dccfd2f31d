"""After a run, POST its summary to the job's ``notify_url``; a failure is logged, never fatal."""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from reconcile.client import USER_AGENT

log = structlog.get_logger("reconcile.notify")
TIMEOUT_SECONDS = 10.0


def summary(manifest: Mapping[str, object]) -> dict[str, object]:
    """What a chat channel or monitor needs: no row data, no keys."""
    keys = (
        "run_id",
        "dry_run",
        "operation",
        "base_url",
        "input",
        "results",
        "started_at",
        "ended_at",
        "operator",
        "interrupted_by",
        "exit_code",
        "counts",
    )
    return {k: manifest.get(k) for k in keys}


def _where(url: str) -> str:
    """Scheme and host only: webhook URLs often carry a token in their path."""
    import httpx

    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}"


def notify(url: str, manifest: Mapping[str, object]) -> bool:
    # Here, not at the top: every run imports this module, few jobs set notify_url, and httpx
    # (with click, email and urllib.request) is a share of a run's start-up.
    import httpx

    try:
        response = httpx.post(
            url, json=summary(manifest), timeout=TIMEOUT_SECONDS, headers={"User-Agent": USER_AGENT}
        )
        response.raise_for_status()
    except httpx.HTTPStatusError as exc:
        log.warning("notify.failed", to=_where(url), status=exc.response.status_code)
        return False
    except httpx.HTTPError as exc:
        # The exception's text may quote the URL, and with it a webhook's token.
        log.warning("notify.failed", to=_where(url), error=type(exc).__name__)
        return False
    log.info("notify.sent", to=_where(url), status=response.status_code)
    return True
