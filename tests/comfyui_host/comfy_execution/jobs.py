"""Newer ComfyUI's comfy_execution/jobs.py (the /api/jobs routes' helpers),
for the stand-in's ``--emulate-jobs-api``. Written from what Comfy-Org/ComfyUI
(server.py at 002c3fb9, comfy_execution/jobs.py at 172be438) does: queue items
and history entries become job dicts, filtered, sorted and paged; a cancel
interrupts a running job or dequeues a pending one. Not in ComfyUI 0.3.64.

Differences: previews are found for image/video/audio/3d/text outputs with
the same priority (saved visual output first), but the 3D/text file-name
fallbacks are reduced to their extension lists.
"""

import uuid

CANCEL_RUNNING, CANCEL_PENDING, CANCEL_TERMINAL, CANCEL_UNKNOWN = "running", "pending", "terminal", "unknown"


class JobStatus:
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ALL = [PENDING, IN_PROGRESS, COMPLETED, FAILED, CANCELLED]


PREVIEWABLE_MEDIA_TYPES = frozenset({"images", "video", "audio", "3d", "text"})
THREE_D_EXTENSIONS = (".obj", ".fbx", ".gltf", ".glb", ".usdz")
TEXT_EXTENSIONS = (".txt", ".md", ".json")


def prune_dict(d):
    return {k: v for k, v in d.items() if v is not None}


def validate_job_id(value):
    """A job id is a UUID in canonical lowercase hyphenated form (ValueError otherwise)."""
    if not isinstance(value, str):
        raise ValueError(f"job id must be a string, got {type(value).__name__}")
    if str(uuid.UUID(value)) != value:
        raise ValueError("job id must be a UUID in canonical lowercase hyphenated form")
    return value


def _metadata(extra_data):
    workflow = (extra_data.get("extra_pnginfo") or {}).get("workflow") or {}
    return extra_data.get("create_time"), workflow.get("id") if isinstance(workflow, dict) else None


def _previewable(media_type, item):
    if media_type in PREVIEWABLE_MEDIA_TYPES:
        return True
    fmt = item.get("format", "")
    if fmt and (fmt.startswith("video/") or fmt.startswith("audio/")):
        return True
    name = item.get("filename", "").lower()
    return name.endswith(THREE_D_EXTENSIONS) or name.endswith(TEXT_EXTENSIONS)


def _summary(outputs):
    """(outputs_count, previewable count, preview_output) of a history entry's outputs."""
    count = previewable = 0
    saved = other = text_file = None
    for node_id, node_outputs in outputs.items():
        if not isinstance(node_outputs, dict):
            continue
        for media_type, items in node_outputs.items():
            if media_type == "animated" or not isinstance(items, list):
                continue
            for item in items:
                if not isinstance(item, dict):
                    continue
                count += 1
                if not _previewable(media_type, item):
                    continue
                previewable += 1
                enriched = {**item, "nodeId": node_id}
                enriched.setdefault("mediaType", media_type)
                if media_type == "text" or item.get("filename", "").lower().endswith(TEXT_EXTENSIONS):
                    text_file = text_file or enriched
                elif item.get("type") == "output":
                    saved = saved or enriched
                else:
                    other = other or enriched
    return count, previewable, saved or other or text_file


def normalize_queue_item(item, status, include_workflow=False):
    priority, prompt_id, prompt, extra_data, _ = item[:5]
    create_time, workflow_id = _metadata(extra_data)
    job = prune_dict({"id": prompt_id, "status": status, "priority": priority, "create_time": create_time,
                      "outputs_count": 0, "previewable_outputs_count": 0, "workflow_id": workflow_id})
    if include_workflow:
        job["workflow"] = {"prompt": prompt, "extra_data": extra_data}
    return job


def normalize_history_item(prompt_id, history_item, include_outputs=False):
    priority, _, prompt, extra_data, _ = history_item["prompt"][:5]
    create_time, workflow_id = _metadata(extra_data)
    status_info = history_item.get("status") or {}
    start = end = error = None
    interrupted = False
    for entry in status_info.get("messages", []):
        if isinstance(entry, (list, tuple)) and len(entry) >= 2 and isinstance(entry[1], dict):
            event, data = entry[0], entry[1]
            if event == "execution_start":
                start = data.get("timestamp")
            elif event in ("execution_success", "execution_error", "execution_interrupted"):
                end = data.get("timestamp")
                if event == "execution_error":
                    error = data
                elif event == "execution_interrupted":
                    interrupted = True
    status_str = status_info.get("status_str")
    if status_str == "error":
        status = JobStatus.CANCELLED if interrupted else JobStatus.FAILED
    else:
        status = JobStatus.COMPLETED
    outputs = history_item.get("outputs", {})
    count, previewable, preview = _summary(outputs)
    job = prune_dict({"id": prompt_id, "status": status, "priority": priority, "create_time": create_time,
                      "execution_start_time": start, "execution_end_time": end, "execution_error": error,
                      "outputs_count": count, "previewable_outputs_count": previewable,
                      "preview_output": preview, "workflow_id": workflow_id})
    if include_outputs:
        job["outputs"] = outputs
        job["execution_status"] = status_info
        job["workflow"] = {"prompt": prompt, "extra_data": extra_data}
    return job


def apply_sorting(jobs, sort_by, sort_order):
    if sort_by == "execution_duration":
        def key(job):
            start, end = job.get("execution_start_time", 0), job.get("execution_end_time", 0)
            return end - start if end and start else 0
    else:
        def key(job):
            return job.get("create_time", 0)
    return sorted(jobs, key=key, reverse=(sort_order == "desc"))


def get_job(prompt_id, running, queued, history):
    if prompt_id in history:
        return normalize_history_item(prompt_id, history[prompt_id], include_outputs=True)
    for item in running:
        if item[1] == prompt_id:
            return normalize_queue_item(item, JobStatus.IN_PROGRESS, include_workflow=True)
    for item in queued:
        if item[1] == prompt_id:
            return normalize_queue_item(item, JobStatus.PENDING, include_workflow=True)
    return None


def get_all_jobs(running, queued, history, status_filter=None, workflow_id=None, sort_by="created_at",
                 sort_order="desc", limit=None, offset=0):
    """(jobs, total before paging)."""
    wanted = JobStatus.ALL if status_filter is None else status_filter
    jobs = []
    if JobStatus.IN_PROGRESS in wanted:
        jobs += [normalize_queue_item(item, JobStatus.IN_PROGRESS) for item in running]
    if JobStatus.PENDING in wanted:
        jobs += [normalize_queue_item(item, JobStatus.PENDING) for item in queued]
    finished = {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED} & set(wanted)
    if finished:
        for prompt_id, item in history.items():
            job = normalize_history_item(prompt_id, item)
            if job.get("status") in finished:
                jobs.append(job)
    if workflow_id:
        jobs = [job for job in jobs if job.get("workflow_id") == workflow_id]
    jobs = apply_sorting(jobs, sort_by, sort_order)
    total = len(jobs)
    if offset > 0:
        jobs = jobs[offset:]
    if limit is not None:
        jobs = jobs[:limit]
    return jobs, total


def classify_job_for_cancel(prompt_id, running, queued, history):
    if any(item[1] == prompt_id for item in running):
        return CANCEL_RUNNING
    if any(item[1] == prompt_id for item in queued):
        return CANCEL_PENDING
    return CANCEL_TERMINAL if prompt_id in history else CANCEL_UNKNOWN


def cancel_job(prompt_id, running, queued, history, interrupt, dequeue):
    """Interrupt a running job, dequeue a pending one; finished or unknown: a no-op.
    ``interrupt``/``dequeue`` say whether they acted, so the answer is what happened."""
    classification = classify_job_for_cancel(prompt_id, running, queued, history)
    if classification == CANCEL_RUNNING:
        return CANCEL_RUNNING if interrupt(prompt_id) else CANCEL_UNKNOWN
    if classification == CANCEL_PENDING:
        if dequeue(prompt_id):
            return CANCEL_PENDING
        return CANCEL_RUNNING if interrupt(prompt_id) else CANCEL_UNKNOWN
    return classification
