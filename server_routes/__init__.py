"""aiohttp layer: the middleware, the key API, sign-in routes, the login page.

Thin by intent: parse the request, call the runtime or the pure rules in
``auth``, format the answer.
"""
