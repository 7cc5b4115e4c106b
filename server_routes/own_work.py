"""Each key's work is its own: ComfyUI's queue, history, interrupt and jobs
routes, seen and acted on by a key for its own prompts only.

A route hook (see ``route_hooks``). For a principal held to one key
(``Principal.own_work_only``): ``GET /queue`` lists only its running and
pending prompts, ``GET /history`` (and ``/history/{id}``) only its own
items, paged by ComfyUI's ``max_items``/``offset`` over its own; ``POST
/queue``, ``POST /history``, ``POST /interrupt`` and newer ComfyUI's job
cancels act only on its own prompts, else 403 ``NOT_YOUR_PROMPT`` with
nothing changed; a ``clear`` becomes a delete of its own ids. Admins, the
anonymous of ``enable`` mode and the trusted local caller see and act as in
ComfyUI. For everyone, secrets (``core.own_work.scrub``) are taken out of
the queue items and history entries answered, never out of the ones ComfyUI
keeps.

Reads answer from ComfyUI's ``prompt_queue`` as its handlers do (the same
calls, the same shapes), which costs less than answering through the handler
and rewriting its JSON; a key's history is read through the prompt ids the
JobTracker remembers for it, so its cost follows the key's items, not the
whole history. Anything unusual (a bad number in the query, no prompt
queue) goes to ComfyUI's own handler, which answers it before reading any
data.
"""

import json
import uuid

from aiohttp import web

from ..core.own_work import answered_history_entry, answered_item, history_json, history_page, queue_json, scrub
from .responses import error

NOT_YOUR_PROMPT = "NOT_YOUR_PROMPT"
JOB_NOT_FOUND = {"error": "Job not found"}  # newer ComfyUI's answer for an unknown job id


def json_text(text: str) -> web.Response:
    """An answer of JSON text already written (what ``web.json_response`` sends)."""
    return web.Response(text=text, content_type="application/json")


def not_yours(what="prompt"):
    return error(403, NOT_YOUR_PROMPT, f"this {what} was not queued with your key; you may act only on your own")


def bad_body(message, field=None):
    extra = {"field": field} if field else {}
    return error(400, "INVALID_BODY", message, **extra)


async def _json_body(request):
    """The body as ComfyUI reads it (``request.json()``), or None when it is not JSON."""
    try:
        return await request.json()
    except (ValueError, UnicodeDecodeError):
        return None


class OwnWork:
    def __init__(self, runtime, prompt_server):
        self.jobs = runtime.jobs  # JobTracker: who queued which prompt
        self.prompt_server = prompt_server
        self.routes = {
            ("/queue", "GET"): self.get_queue,
            ("/queue", "POST"): self.post_queue,
            ("/history", "GET"): self.get_history,
            ("/history", "POST"): self.post_history,
            ("/history/{prompt_id}", "GET"): self.get_history_item,
            ("/interrupt", "POST"): self.post_interrupt,
        }
        # Newer ComfyUI registers these as "/api/jobs...": both spellings reach them.
        for path, method, run in (("/jobs", "GET", self.get_jobs), ("/jobs/{job_id}", "GET", self.get_job),
                                  ("/jobs/{job_id}/cancel", "POST", self.cancel_job),
                                  ("/jobs/cancel", "POST", self.cancel_jobs)):
            self.routes[(path, method)] = self.routes[("/api" + path, method)] = run

    def wrapper(self, path, method):
        """A route hook (see route_hooks)."""
        return self.routes.get((path, method))

    def queue(self):
        return getattr(self.prompt_server, "prompt_queue", None)

    def _current(self, queue):
        volatile = getattr(queue, "get_current_queue_volatile", None)
        return volatile() if volatile is not None else queue.get_current_queue()

    def _owned(self, prompt_id, key_pk) -> bool:
        return isinstance(prompt_id, str) and self.jobs.owned_by(prompt_id, key_pk)

    # ---- the queue ---------------------------------------------------------------------------------

    async def get_queue(self, request, handler, principal, now):
        queue = self.queue()
        if queue is None:
            return await handler(request)
        running, pending = self._current(queue)
        key_pk = principal.own_work_only
        if key_pk is not None:
            owned = self.jobs.owned_by
            running = [item for item in running if owned(item[1], key_pk)]
            pending = [item for item in pending if owned(item[1], key_pk)]
        return json_text(queue_json(running, pending))

    async def post_queue(self, request, handler, principal, now):
        key_pk = principal.own_work_only
        queue = self.queue()
        if key_pk is None or queue is None:
            return await handler(request)
        ids = await self._ids_to_delete(request, key_pk)
        if isinstance(ids, web.Response):
            return ids
        wanted, clear = ids
        if clear:
            _, pending = self._current(queue)
            wanted = [item[1] for item in pending if self.jobs.owned_by(item[1], key_pk)] + wanted
        for prompt_id in wanted:
            queue.delete_queue_item(lambda item, prompt_id=prompt_id: item[1] == prompt_id)
        return web.Response(status=200)

    async def _ids_to_delete(self, request, key_pk):
        """(ids to delete, clear?) from a ``{"delete": [...], "clear": bool}``
        body, or the refusal: every id must be the key's own."""
        body = await _json_body(request)
        if not isinstance(body, dict):
            return bad_body("send a JSON object: {\"delete\": [prompt ids]} or {\"clear\": true}")
        wanted = body.get("delete", [])
        if not isinstance(wanted, list):
            return bad_body("'delete' must be a list of prompt ids", "delete")
        if not all(self._owned(prompt_id, key_pk) for prompt_id in wanted):
            return not_yours()
        return wanted, bool(body.get("clear"))

    # ---- the history -------------------------------------------------------------------------------

    async def get_history(self, request, handler, principal, now):
        queue = self.queue()
        query = request.rel_url.query
        try:
            max_items = int(query["max_items"]) if "max_items" in query else None
            offset = int(query["offset"]) if "offset" in query else -1
        except ValueError:
            return await handler(request)  # ComfyUI's own answer to a bad number; it reads nothing
        if queue is None:
            return await handler(request)
        key_pk = principal.own_work_only
        if key_pk is None:
            return json_text(history_json(queue.get_history(max_items=max_items, offset=offset).items()))
        with queue.mutex:
            history = queue.history
            page = history_page(self.jobs.prompts_of(key_pk), history, max_items, offset)
            entries = [(prompt_id, history[prompt_id]) for prompt_id in page]
        return json_text(history_json(entries))

    async def get_history_item(self, request, handler, principal, now):
        queue = self.queue()
        if queue is None:
            return await handler(request)
        prompt_id = request.match_info.get("prompt_id", None)
        key_pk = principal.own_work_only
        if key_pk is not None and not self._owned(prompt_id, key_pk):
            return web.json_response({})  # as for an id ComfyUI does not know
        return json_text(history_json(queue.get_history(prompt_id=prompt_id).items()))

    async def post_history(self, request, handler, principal, now):
        key_pk = principal.own_work_only
        queue = self.queue()
        if key_pk is None or queue is None:
            return await handler(request)
        ids = await self._ids_to_delete(request, key_pk)
        if isinstance(ids, web.Response):
            return ids
        wanted, clear = ids
        if clear:
            with queue.mutex:
                history = queue.history
                wanted = [prompt_id for prompt_id in self.jobs.prompts_of(key_pk) if prompt_id in history] + wanted
        for prompt_id in wanted:
            queue.delete_history_item(prompt_id)
        return web.Response(status=200)

    # ---- interrupting ------------------------------------------------------------------------------

    async def post_interrupt(self, request, handler, principal, now):
        key_pk = principal.own_work_only
        queue = self.queue()
        if key_pk is None or queue is None:
            return await handler(request)
        try:
            body = await request.json()
        except json.JSONDecodeError:
            body = {}  # as ComfyUI: no body (or not JSON) is a global interrupt
        except (ValueError, UnicodeDecodeError):
            return await handler(request)
        if not isinstance(body, dict):
            return await handler(request)  # ComfyUI fails on it before interrupting anything
        prompt_id = body.get("prompt_id")
        if prompt_id:
            # ComfyUI interrupts it only if it is running; the key may ask only for its own.
            return await handler(request) if self._owned(prompt_id, key_pk) else not_yours()
        running, _ = self._current(queue)
        if not running:
            return web.Response(status=200)  # nothing to interrupt; ComfyUI's flag would wait for the next prompt
        if all(self.jobs.owned_by(item[1], key_pk) for item in running):
            return await handler(request)
        return not_yours("running prompt")

    # ---- newer ComfyUI's jobs ----------------------------------------------------------------------

    def _own_jobs_inputs(self, queue, key_pk):
        """(running, pending, history) of the key's own prompts, secrets out,
        as newer ComfyUI hands them to ``comfy_execution.jobs``."""
        running, pending = self._current(queue)
        owned = self.jobs.owned_by
        running = [answered_item(item) for item in running if owned(item[1], key_pk)]
        pending = [answered_item(item) for item in pending if owned(item[1], key_pk)]
        with queue.mutex:
            history = queue.history
            entries = {prompt_id: history[prompt_id] for prompt_id in self.jobs.prompts_of(key_pk)
                       if prompt_id in history}
        return running, pending, {prompt_id: answered_history_entry(entry) for prompt_id, entry in entries.items()}

    async def get_jobs(self, request, handler, principal, now):
        key_pk = principal.own_work_only
        queue = self.queue()
        if key_pk is None or queue is None:
            return await handler(request)  # the list carries no extra_data
        try:
            from comfy_execution.jobs import JobStatus, get_all_jobs
        except ImportError:
            return error(503, "JOBS_UNAVAILABLE", "this ComfyUI's job list cannot be filtered for a key")
        parsed = jobs_query(request.rel_url.query, JobStatus.ALL)
        if parsed is None:
            return await handler(request)  # ComfyUI's own 400, before it reads any job
        running, pending, history = self._own_jobs_inputs(queue, key_pk)
        jobs, total = get_all_jobs(running, pending, history, **parsed)
        offset, limit = parsed["offset"], parsed["limit"]
        return web.json_response({"jobs": jobs, "pagination": {"offset": offset, "limit": limit, "total": total,
                                                                "has_more": (offset + len(jobs)) < total}})

    async def get_job(self, request, handler, principal, now):
        key_pk = principal.own_work_only
        if key_pk is not None and not self._owned(request.match_info.get("job_id"), key_pk):
            return web.json_response(JOB_NOT_FOUND, status=404)  # as for an id ComfyUI does not know
        response = await handler(request)
        if not isinstance(response, web.Response) or response.status != 200 or response.body is None:
            return response
        job = json.loads(response.body)
        workflow = job.get("workflow") if isinstance(job, dict) else None
        if isinstance(workflow, dict) and "extra_data" in workflow:
            cleaned = scrub(workflow["extra_data"])
            if cleaned is not workflow["extra_data"]:
                workflow["extra_data"] = cleaned
                return web.json_response(job, status=response.status)
        return response

    async def cancel_job(self, request, handler, principal, now):
        key_pk = principal.own_work_only
        if key_pk is not None and not self._owned(request.match_info.get("job_id"), key_pk):
            return not_yours("job")
        return await handler(request)

    async def cancel_jobs(self, request, handler, principal, now):
        key_pk = principal.own_work_only
        if key_pk is None:
            return await handler(request)
        body = await _json_body(request)
        job_ids = body.get("job_ids") if isinstance(body, dict) else None
        if not isinstance(job_ids, list) or not all(valid_job_id(job_id) for job_id in job_ids):
            return await handler(request)  # ComfyUI refuses it (400) before cancelling anything
        if not all(self.jobs.owned_by(job_id, key_pk) for job_id in job_ids):
            return not_yours("job")
        return await handler(request)


def valid_job_id(job_id) -> bool:
    """Whether newer ComfyUI takes ``job_id`` (a UUID in canonical form) in a batch cancel."""
    if not isinstance(job_id, str):
        return False
    try:
        return str(uuid.UUID(job_id)) == job_id
    except ValueError:
        return False


def jobs_query(query, statuses):
    """Newer ComfyUI's ``GET /api/jobs`` query as ``get_all_jobs`` arguments,
    or None where its handler answers 400 (it then says why)."""
    status_filter = None
    if query.get("status"):
        status_filter = [part.strip().lower() for part in query["status"].split(",") if part.strip()]
        if any(status not in statuses for status in status_filter):
            return None
    sort_by = query.get("sort_by", "created_at").lower()
    sort_order = query.get("sort_order", "desc").lower()
    if sort_by not in ("created_at", "execution_duration") or sort_order not in ("asc", "desc"):
        return None
    limit, offset = None, 0
    try:
        if "limit" in query:
            limit = int(query["limit"])
            if limit <= 0:
                return None
        if "offset" in query:
            offset = max(0, int(query["offset"]))
    except ValueError:
        return None
    return {"status_filter": status_filter, "workflow_id": query.get("workflow_id"), "sort_by": sort_by,
            "sort_order": sort_order, "limit": limit, "offset": offset}
