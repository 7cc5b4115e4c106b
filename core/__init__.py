"""The package's pure core: everything that is neither HTTP (``server_routes``)
nor the database (``storage``), and so is unit-tested without a server.

- who and what: key format (``keys``), hashing, principals, the access policy
  and the route table, local trust and proxies (``proxies``), the setup code;
- limits: the hourly rate limiter and shared quota (``ratelimit``), sign-in
  throttling (``throttle``), per-key job limits and job outcomes (``jobs``);
- accounting: usage aggregation and summaries (``usage``);
- input and settings: request-body validation (``validation``), configuration
  from the environment and config.json (``config``), passwords (bcrypt).

(It was called ``auth`` while it held only the rules; it now holds usage, jobs
and configuration as well, so it is named for what it is.)
"""
