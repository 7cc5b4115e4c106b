"""Workflows queued through POST /prompt: attribution and per-key job limits.

ComfyUI's on-prompt handlers cannot reject a prompt (their exceptions are
swallowed), so the limits are enforced here, around the /prompt handler, and
the on-prompt handler only makes sure the prompt has an id we can record.
Nothing is written into ``extra_data``: /queue shows it to everyone.
"""

import contextvars
import time
import uuid

from .responses import error, rate_limit_headers

WAITING_RETRY_AFTER = 5

# The id the on-prompt handler settled on for the request being handled.
_prompt_slot: contextvars.ContextVar = contextvars.ContextVar("comfyui_api_auth_prompt", default=None)


class PromptGate:
    def __init__(self, runtime):
        self.jobs = runtime.jobs                      # JobTracker: who queued what, what waits
        self.prompt_limiter = runtime.prompt_limiter  # queued prompts per hour, per key

    def wrapper(self, path, method):
        """A route hook (see route_hooks): the gate runs around ``POST /prompt``."""
        return self.run if path == "/prompt" and method == "POST" else None

    def on_prompt(self, json_data):
        """Runs inside ComfyUI's post_prompt, before it reads ``prompt_id``."""
        slot = _prompt_slot.get()
        if slot is None or not isinstance(json_data, dict):
            return json_data
        prompt_id = json_data.get("prompt_id")
        if not isinstance(prompt_id, str) or not prompt_id or self.jobs.is_taken(prompt_id):
            # A client-chosen id that someone else already used would hand
            # their job to this caller: give this prompt a fresh id instead.
            prompt_id = str(uuid.uuid4())
            json_data["prompt_id"] = prompt_id
        slot.append(prompt_id)
        return json_data

    def _refuse_job_limits(self, key, now):
        """A 429 answer if the key may not queue another prompt now, else None."""
        if key.max_waiting is not None and self.jobs.waiting_of(key.pk) >= key.max_waiting:
            return error(429, "TOO_MANY_WAITING_PROMPTS",
                         f"this key may have at most {key.max_waiting} prompts queued or running at once",
                         headers={"Retry-After": str(WAITING_RETRY_AFTER)},
                         limit=key.max_waiting, reset_in=WAITING_RETRY_AFTER)
        if key.prompts_per_hour is not None:
            allowed, remaining, reset_at = self.prompt_limiter.hit(key.pk, key.prompts_per_hour, now)
            if not allowed:
                reset_in = max(1, reset_at - int(now))
                return error(429, "PROMPT_LIMIT_EXCEEDED",
                             f"this key may queue {key.prompts_per_hour} prompts per hour",
                             headers=rate_limit_headers(key.prompts_per_hour, 0, reset_at, reset_in),
                             limit=key.prompts_per_hour, reset_in=reset_in)
        return None

    async def run(self, request, handler, principal, now):
        key = principal.key
        if key is not None:
            refusal = self._refuse_job_limits(key, now)
            if refusal is not None:
                return refusal
            # Hold a waiting slot while ComfyUI validates, so a burst cannot overshoot.
            self.jobs.hold(key.pk)
        slot = []
        token = _prompt_slot.set(slot)
        accepted = False
        try:
            response = await handler(request)
            accepted = response.status == 200 and bool(slot)
            return response
        finally:
            _prompt_slot.reset(token)
            key_pk = key.pk if key is not None else None
            if key_pk is not None:
                self.jobs.release(key_pk)  # queued() below takes it again
                if not accepted and key.prompts_per_hour is not None:
                    self.prompt_limiter.refund(key_pk, now)
            if accepted:
                self.jobs.queued(slot[-1], key_pk, principal.kind, time.time())
