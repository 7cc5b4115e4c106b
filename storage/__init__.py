"""Persistence with Peewee: models, opening a database URL, migrations and
the repository functions. Nothing here knows HTTP or the event loop; every
function is synchronous and is run on the runtime's database thread.
"""
