"""The rules of the package, free of HTTP and of the database.

Key format and hashing, principals and the access policy, the hourly rate
limiter, usage aggregation, validation of request bodies and configuration.
Everything here is plain Python and is unit-tested without a server.
"""
