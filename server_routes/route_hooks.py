"""Route hooks: code that runs around the handler of some routes.

A hook is an object with ``wrapper(path, method)``: for a route (its template
without the ``/api`` twin prefix, and the request method) it answers an
async callable ``run(request, handler, principal, now)`` that calls
``handler(request)`` (or answers without it), or None to stay out. The
middleware asks every hook once per route, when it works out the route's
facts, and runs the wrappers it got in order, outermost first, for every
principal (anonymous, admin or key) that the policy let through.

The prompt gate, the open-socket registry, the per-key ComfyUI user and the
isolation of each key's work are hooks; so ``middleware.py`` knows none of them.
"""


def compose(wrappers):
    """One ``run(request, handler, principal, now)`` for a list of wrappers
    (None when there are none): the first is outermost."""
    if not wrappers:
        return None
    if len(wrappers) == 1:
        return wrappers[0]
    outer, rest = wrappers[0], compose(wrappers[1:])

    async def run(request, handler, principal, now):
        async def inner(inner_request):
            return await rest(inner_request, handler, principal, now)
        return await outer(request, inner, principal, now)
    return run


def wrapper_for(hooks, path, method):
    """The composed wrapper of ``hooks`` for one route, or None."""
    return compose([found for found in (hook.wrapper(path, method) for hook in hooks) if found is not None])
